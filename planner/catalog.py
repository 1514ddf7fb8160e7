"""Load and look up the shipped (or user-supplied) model, hardware and instance specs.

Two validation passes with different jobs: pydantic checks each file (types,
ranges, unknown keys); :func:`check_precision_supported` and the layout checks in
:mod:`planner.perf.layout` check facts that involve two specs at once. Every
failure is a :class:`~planner.errors.SpecError` naming the file, the field and
the fix.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import ValidationError

from planner.errors import SpecError
from planner.safe_input import excerpt, read_text, yaml_error_text, yaml_load
from planner.specs import HardwareSpec, Instance, ModelSpec, Precision, SpecModel

S = TypeVar("S", bound=SpecModel)

_KINDS = ("models", "hardware", "instances")


def catalog_dir(kind: str) -> Path:
    """Folder holding the shipped specs of one kind, in an installed wheel or a source checkout."""
    if kind not in _KINDS:
        raise ValueError(f"unknown catalog kind {kind!r}")
    installed = Path(__file__).parent / "_catalog" / kind
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / kind


def format_validation_error(err: ValidationError, cls: type[SpecModel]) -> tuple[str, str]:
    """Turn pydantic's error list into (field, message-with-fix) for the first problem."""
    problems = []
    first_field = ""
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            leaf = str(item["loc"][-1])
            allowed = _allowed_fields(cls, item["loc"][:-1])
            close = difflib.get_close_matches(leaf, allowed, n=1)
            hint = (f"did you mean '{close[0]}'? " if close else "") + f"allowed: {', '.join(allowed)}"
            msg = f"unknown field; remove it ({hint})"
        elif kind == "missing":
            msg = "missing required field; add it"
        elif not item["loc"]:  # a check across fields: the message names them, the input is the whole spec
            msg = item["msg"].removeprefix("Value error, ")
        else:
            msg = f"{item['msg']} (got {excerpt(item.get('input'))})"
        first_field = first_field or loc
        problems.append(f"'{loc}': {msg}" if loc else msg)
    return first_field, "; ".join(problems)


def _allowed_fields(cls: type[SpecModel], parents: tuple) -> list[str]:
    """Field names allowed at a nested location, for 'did you mean' hints."""
    model: type[SpecModel] | None = cls
    for key in parents:
        if model is None or not isinstance(key, str) or key not in model.model_fields:
            return []
        annotation = model.model_fields[key].annotation
        model = next(
            (
                a
                for a in getattr(annotation, "__args__", (annotation,))
                if isinstance(a, type) and issubclass(a, SpecModel)
            ),
            None,
        )
    return sorted(model.model_fields) if model else []


def parse_spec(data: object, cls: type[S], path: str | Path) -> S:
    """Validate already-parsed YAML/JSON data as a spec, with file-naming errors."""
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping of fields for a {cls.__name__}, got {type(data).__name__}",
            path=path,
        )
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        field, message = format_validation_error(err, cls)
        raise SpecError(f"invalid {cls.__name__}: {message}", path=path, field=field or None) from None


def read_yaml(path: str | Path) -> object:
    """Read a YAML file with sizes bounded (:mod:`planner.safe_input`), reporting errors with their line."""
    path = Path(path)
    text = read_text(path, fix="save the file as UTF-8 text")
    try:
        return yaml_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"not valid YAML{yaml_error_text(err)}; fix the file", path=path) from None


def load_spec(path: str | Path, cls: type[S]) -> S:
    """Load one spec file of a given class."""
    return parse_spec(read_yaml(path), cls, path)


@cache
def _catalog(kind: str) -> dict[str, Path]:
    """Name -> file for every spec of one kind (names are the file stems)."""
    folder = catalog_dir(kind)
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def names(kind: str) -> list[str]:
    """Sorted names in the shipped catalog of one kind."""
    return sorted(_catalog(kind))


def _resolve(kind: str, name_or_path: str, field: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise SpecError("no such file; check the path", path=candidate)
        return candidate
    table = _catalog(kind)
    if name_or_path in table:
        return table[name_or_path]
    close = difflib.get_close_matches(name_or_path, list(table), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(table)}"
    raise SpecError(
        f"unknown {field} '{name_or_path}'; {hint} (see `disagg list {kind}`, "
        f"or pass a path to a .yaml spec)",
        field=field,
    )


@cache
def load_model(name_or_path: str) -> ModelSpec:
    """A model spec by catalog name or by path to a YAML file."""
    path = _resolve("models", name_or_path, "model")
    spec = load_spec(path, ModelSpec)
    _check_name_matches_file(spec.name, path, "models")
    return spec


@cache
def load_hardware(name_or_path: str) -> HardwareSpec:
    """A hardware spec by catalog name or by path to a YAML file."""
    path = _resolve("hardware", name_or_path, "hardware")
    spec = load_spec(path, HardwareSpec)
    _check_name_matches_file(spec.name, path, "hardware")
    return spec


def load_instance(name_or_path: str) -> Instance:
    """A planning instance by catalog name or by path to a YAML file."""
    return load_spec(_resolve("instances", name_or_path, "instance"), Instance)


def _check_name_matches_file(name: str, path: Path, kind: str) -> None:
    if path in _catalog(kind).values() and name != path.stem:
        raise SpecError(
            f"name '{name}' differs from the file name '{path.stem}'; make them equal",
            path=path,
            field="name",
        )


def check_precision_supported(hardware: HardwareSpec, precision: Precision) -> None:
    """Cross-spec check: the GPU has a datasheet peak at the requested precision."""
    if hardware.peak_tflops_per_s(precision) is None:
        raise SpecError(
            f"{hardware.name} has no {precision} tensor cores; use one of "
            f"{', '.join(hardware.supported_precisions)}",
            field="precision",
        )
