"""The spec reference (``docs/schema.md``), generated from the pydantic specs so it cannot drift.

``disagg schema --out docs/schema.md`` writes it; ``tests/test_docs.py`` checks that
the committed file equals :func:`schema_markdown`, so a field added to
:mod:`planner.specs` without regenerating the reference fails the suite. Each
field's line comes from the spec itself: its dotted name, type, default, bounds
and the attribute docstring the spec contract requires.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from planner.specs import HardwareSpec, Instance, ModelSpec, RequestClass, SpecModel

SECTIONS: tuple[tuple[str, type[SpecModel], str], ...] = (
    ("Instance", Instance, "`instances/*.yaml` (`disagg list instances`)."),
    (
        "Request class (`traffic.classes[]`)",
        RequestClass,
        "An entry of `traffic.classes` (or of `traffic:` written as a list).",
    ),
    ("Model", ModelSpec, "`models/*.yaml` (`disagg list models`; `disagg import-hf` writes one)."),
    ("Hardware", HardwareSpec, "`hardware/*.yaml` (`disagg list hardware`)."),
)
"""The documented specs, in reading order."""

_BOUNDS = ((Gt, "gt", "> {}"), (Ge, "ge", ">= {}"), (Lt, "lt", "< {}"), (Le, "le", "<= {}"))
_LENGTHS = ((MinLen, "min_length", "length >= {}"), (MaxLen, "max_length", "length <= {}"))


def _spec_of(annotation: Any) -> type[SpecModel] | None:
    """The nested spec inside an annotation (``Slo``, ``Slo | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, SpecModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, SpecModel):
                return arg
    return None


def _type_text(annotation: Any) -> str:
    """A short readable type: ``int``, ``float or null``, ``one of: gqa, mla``, ``list of float``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin is Literal:
        return "one of: " + ", ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        kinds = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


def _item_bounds(annotation: Any) -> list[str]:
    """Bounds on the items of ``list[Annotated[float, Field(gt=0)]]``."""
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is list:
            inner = typing.get_args(arg)[0]
            if typing.get_origin(inner) is typing.Annotated:
                meta = [m for info in typing.get_args(inner)[1:] for m in getattr(info, "metadata", [info])]
                return [f"each {text}" for text in _constraints(meta)]
    return []


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    for kind, attr, text in (*_BOUNDS, *_LENGTHS):
        for item in metadata:
            if isinstance(item, kind):
                out.append(text.format(_number(getattr(item, attr))))
    for item in metadata:
        pattern = getattr(item, "pattern", None)
        if pattern:
            out.append(f"matches `{pattern}`")
    return out


def _number(value: float) -> str:
    """``10000000`` -> ``10,000,000``; ``0.5`` stays ``0.5``."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = None if field.default is PydanticUndefined else field.default
    if isinstance(value, BaseModel):
        return "(see fields)"
    if value is None:
        return "null"
    if value in ({}, [], ""):
        return "empty"
    return f"`{value}`"


def _escape(text: str) -> str:
    """One line of Markdown table cell: RST literals as Markdown code, pipes escaped."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def field_rows(spec: type[SpecModel], prefix: str = "") -> list[tuple[str, str, str, str, str]]:
    """(dotted field, type, default, bounds, meaning) for every field, nested specs expanded."""
    rows = []
    for name, field in spec.model_fields.items():
        dotted = f"{prefix}{name}"
        nested = _spec_of(field.annotation)
        bounds = _constraints(field.metadata) + _item_bounds(field.annotation)
        rows.append(
            (
                f"`{dotted}`",
                _escape(_type_text(field.annotation)),
                _default_text(field),
                _escape(", ".join(bounds)),
                _escape(field.description or ""),
            )
        )
        if nested is not None and nested is not RequestClass:
            rows += field_rows(nested, f"{dotted}.")
    return rows


def schema_markdown() -> str:
    """The whole reference, as written to ``docs/schema.md``."""
    lines = [
        "# Spec reference",
        "",
        "<!-- Generated by `disagg schema --out docs/schema.md` from planner/specs.py; do not edit. -->",
        "",
        "Every spec is strict: an unknown key is an error that lists the valid ones. Units are in the",
        "names (1 GB = 1e9 bytes). A nested field is written with dots, as `--set` and sweep axes take it",
        "(`--set slo.ttft_ms_max=2000`, `--set traffic.isl_tokens=16384`).",
    ]
    for title, spec, intro in SECTIONS:
        lines += ["", f"## {title}", "", f"{intro} {_escape(spec.__doc__ or '')}", ""]
        lines += ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in field_rows(spec)]
    return "\n".join(lines) + "\n"
