"""A sweep grid: a base planning instance and axes of values whose product is the set of cells.

Why it exists
    ``disagg sweep`` answers many what-if questions at once ("every model x every
    prompt shape x NVLink domains of 8 and 72"). A grid file names one instance as
    the base and lists, per field, the values to try; each cell of the product is
    an independent planning question resolved by :func:`planner.problem.resolve`.
    This module only reads and checks grids; :mod:`planner.sweep` runs them.

Format (YAML)::

    base: llama-3.1-8b-gb200-4k-256      # instance name or path (relative to this file)
    description: optional sentence
    set:                                 # optional: overrides every cell shares
      cluster.max_gpus: 72
    axes:                                # field -> list of values; the sweep is the product
      model: [llama-3.1-8b, llama-3.1-70b]
      traffic:                           # a group of fields: each value is a mapping
        - {isl_tokens: 1024, osl_tokens: 1024}
        - {isl_tokens: 8192, osl_tokens: 1024}
      hardware.scale_up_domain_gpus: [8, 72]
      scenario: [null, b200]             # the base instance's named scenarios; null = none

Axis fields are the dotted override keys of :mod:`planner.problem` (``model`` /
``hardware`` swap the spec, ``model.<field>`` / ``hardware.<field>`` change one
field of it, anything else changes the instance), plus ``scenario``. A mapping
value of a group (``traffic``, ``slo``, ``cluster``, ``model.moe``, ...) sets
those fields and keeps the others. In a cell the scenario applies first, then
``set``, then the axis values, so an axis wins over a scenario that touches the
same field. Cells are ordered like ``itertools.product`` over the axes as listed
(the last axis varies fastest).

Every mistake is a :class:`~planner.errors.SpecError` naming the grid file, the
field and the fix, raised before anything runs.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.catalog import load_instance, read_yaml
from planner.errors import SpecError
from planner.safe_input import excerpt
from planner.specs import HardwareSpec, Instance, ModelSpec, SpecModel

GRID_KEYS = ("base", "description", "set", "axes")
"""Top-level keys of a grid file."""
SCENARIO_AXIS = "scenario"
"""The axis that picks one of the base instance's named scenarios (``null``: none)."""
MAX_CELLS = 100_000
"""Most cells a grid may have (each is a full frontier solve); checked before any cell is built."""
NOT_SWEEPABLE = ("name", "description", "scenarios")
"""Instance fields that describe the question rather than pose it."""
_SPEC_PATHS = ("model", "hardware")
"""Override heads that swap a spec by name or path (and whose values may be relative paths)."""


@dataclass(frozen=True)
class GridCell:
    """One cell of a grid: its axis values and the arguments of :func:`planner.problem.resolve`."""

    index: int
    """Position in the product, 0-based (the order of ``itertools.product`` over the axes)."""
    values: dict[str, Any]
    """Axis -> value as written in the grid."""
    scenario: str | None
    """The base instance's scenario to apply, if any."""
    overrides: dict[str, Any]
    """Dotted field -> value: the grid's ``set`` and then this cell's axis values."""

    def columns(self) -> dict[str, Any]:
        """The axis values as output columns: a group's mapping becomes one column per field."""
        out: dict[str, Any] = {}
        for axis, value in self.values.items():
            if isinstance(value, dict):
                out.update({f"{axis}.{k}": v for k, v in value.items()})
            else:
                out[axis] = value
        return out

    def describe(self) -> str:
        """``model=llama-3.1-8b, traffic={isl_tokens: 1024, osl_tokens: 1024}`` for messages."""
        return ", ".join(f"{axis}={_show(value)}" for axis, value in self.values.items())


@dataclass(frozen=True)
class Grid:
    """A parsed and checked grid file."""

    path: str
    """The grid file, for messages and provenance."""
    base: str
    """The base instance: catalog name or path."""
    axes: dict[str, list[Any]]
    """Axis field -> values, in file order."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """The ``set`` block: overrides every cell shares (group mappings already flattened)."""
    description: str = ""

    @property
    def size(self) -> int:
        """Number of cells (the product of the axis lengths)."""
        size = 1
        for values in self.axes.values():
            size *= len(values)
        return size

    def axis_columns(self) -> list[str]:
        """Output column names of the axes, in order (a group axis gives one per field it sets)."""
        columns: list[str] = []
        for axis, values in self.axes.items():
            if any(isinstance(v, dict) for v in values):
                for value in values:
                    columns += [f"{axis}.{k}" for k in value if f"{axis}.{k}" not in columns]
            else:
                columns.append(axis)
        return columns

    def cells(self) -> list[GridCell]:
        """Every cell of the product, in order."""
        names = list(self.axes)
        cells = []
        for index, combo in enumerate(itertools.product(*self.axes.values())):
            values = dict(zip(names, combo, strict=True))
            overrides = dict(self.fixed)
            for axis, value in values.items():
                if axis != SCENARIO_AXIS:
                    overrides.update(_flatten(axis, value) if _is_group(axis) else {axis: value})
            cells.append(GridCell(index, values, values.get(SCENARIO_AXIS), overrides))
        return cells

    def as_data(self) -> dict[str, Any]:
        """The grid as plain data (for provenance)."""
        return {"base": self.base, "description": self.description, "set": self.fixed, "axes": self.axes}


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (every field name and the base instance; values are checked per cell)."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(
            "a grid is a mapping with 'base' (an instance) and 'axes' (field -> list of values); "
            "see the README section 'Sweeps'",
            path=path,
        )
    for key in data:
        if key not in GRID_KEYS:
            raise SpecError(
                f"unknown key; remove it ({_hint(str(key), GRID_KEYS)})", path=path, field=str(key)
            )
    base = data.get("base")
    if not isinstance(base, str) or not base:
        raise SpecError(
            "missing or not a string; name the base instance (`disagg list instances`) or give a path "
            "to an instance YAML",
            path=path,
            field="base",
        )
    base = _relative_to(path, base)
    try:
        instance = load_instance(base)
    except SpecError as err:
        raise SpecError(f"cannot load the base instance: {err}", path=path, field="base") from None

    fixed_raw = data.get("set") or {}
    if not isinstance(fixed_raw, dict):
        raise SpecError("must be a mapping of dotted field -> value", path=path, field="set")
    fixed: dict[str, Any] = {}
    for key, value in fixed_raw.items():
        key = str(key)
        if key == SCENARIO_AXIS:
            raise SpecError(
                "pick scenarios with the 'scenario' axis (axes: {scenario: [name]}), not in 'set'",
                path=path,
                field=f"set.{key}",
            )
        check_field(key, path, f"set.{key}")
        value = _value_paths(path, key, value, f"set.{key}")
        fixed.update(_flatten(key, value) if _is_group(key) else {key: value})

    axes_raw = data.get("axes")
    if not isinstance(axes_raw, dict) or not axes_raw:
        raise SpecError(
            "missing or empty; list at least one field with its values, e.g. "
            "axes: {traffic.isl_tokens: [1024, 8192]}",
            path=path,
            field="axes",
        )
    axes: dict[str, list[Any]] = {}
    for key, values in axes_raw.items():
        axis = str(key)
        where = f"axes.{axis}"
        if not isinstance(values, list):
            raise SpecError(
                f"must be a list of values; write [{excerpt(values)}] for one value", path=path, field=where
            )
        if not values:
            raise SpecError("is empty; give at least one value or remove the axis", path=path, field=where)
        if axis == SCENARIO_AXIS:
            _check_scenarios(values, instance, path)
        else:
            check_field(axis, path, where)
            values = [_value_paths(path, axis, v, where) for v in values]
        for i, value in enumerate(values):
            if value in values[:i]:
                raise SpecError(
                    f"repeats the value {excerpt(value)}; remove the duplicate", path=path, field=where
                )
        axes[axis] = values
    description = data.get("description") or ""
    grid = Grid(str(path), base, axes, fixed, str(description))
    if grid.size > MAX_CELLS:
        shape = " x ".join(str(len(v)) for v in axes.values())
        raise SpecError(
            f"the axes make {grid.size:,} cells ({shape}), more than the {MAX_CELLS:,} a sweep runs; "
            "split the grid or drop values",
            path=path,
            field="axes",
        )
    return grid


# --------------------------------------------------------------------------- field checks


def check_field(dotted: str, path: str | Path, where: str) -> None:
    """Fail unless ``dotted`` names an override key :func:`planner.problem.resolve` understands."""
    head, _, rest = dotted.partition(".")
    if head in NOT_SWEEPABLE:
        raise SpecError(
            f"'{head}' cannot be swept; sweep the fields that pose the question (model, hardware, "
            "traffic, slo, cluster, ...) or the 'scenario' axis",
            path=path,
            field=where,
        )
    if head in _SPEC_PATHS and rest:
        spec: type[SpecModel] = ModelSpec if head == "model" else HardwareSpec
        _walk(spec, rest.split("."), path, where, prefix=f"{head}.")
        return
    _walk(Instance, dotted.split("."), path, where, prefix="")


def _walk(spec: type[SpecModel], parts: list[str], path: str | Path, where: str, prefix: str) -> None:
    """Follow dotted parts through nested spec classes, failing on the first unknown one."""
    cls: type[SpecModel] | None = spec
    for depth, part in enumerate(parts):
        known = sorted(cls.model_fields) if cls else []
        if cls is None:
            parent = prefix + ".".join(parts[:depth])
            raise SpecError(
                f"'{parent}' is a single value, not a group of fields; use '{parent}' as the axis",
                path=path,
                field=where,
            )
        if part not in cls.model_fields:
            group = prefix + ".".join(parts[:depth]) if depth or prefix else "the instance"
            group = group.rstrip(".")
            raise SpecError(
                f"unknown field '{part}' of {group}; {_hint(part, known)}",
                path=path,
                field=where,
            )
        cls = _nested_spec(cls.model_fields[part].annotation)


def _nested_spec(annotation: Any) -> type[SpecModel] | None:
    """The spec class a field holds (through ``X | None``), or None for a plain value."""
    for arg in (*getattr(annotation, "__args__", ()), annotation):
        if isinstance(arg, type) and issubclass(arg, SpecModel):
            return arg
    return None


def _is_group(dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    if head in _SPEC_PATHS:
        if not rest:
            return False
        cls: type[SpecModel] | None = ModelSpec if head == "model" else HardwareSpec
        parts = rest.split(".")
    else:
        cls, parts = Instance, dotted.split(".")
    for part in parts:
        cls = _nested_spec(cls.model_fields[part].annotation) if cls else None
    return cls is not None


def _value_paths(path: str | Path, dotted: str, value: Any, where: str) -> Any:
    """Check a group's mapping keys, and make model/hardware YAML paths relative to the grid."""
    if _is_group(dotted):
        if not isinstance(value, dict) or not value:
            raise SpecError(
                f"'{dotted}' is a group of fields, so each value is a mapping of them, e.g. "
                f"{_group_example(dotted)}; got {excerpt(value)}",
                path=path,
                field=where,
            )
        for key in value:
            check_field(f"{dotted}.{key}", path, f"{where}.{key}")
        return value
    if dotted in _SPEC_PATHS and isinstance(value, str):
        return _relative_to(path, value)
    if dotted in _SPEC_PATHS:
        raise SpecError(
            f"'{dotted}' takes a catalog name (`disagg list {'models' if dotted == 'model' else dotted}`) "
            f"or a YAML path; got {excerpt(value)}",
            path=path,
            field=where,
        )
    return value


def _group_example(dotted: str) -> str:
    examples = {
        "traffic": "{isl_tokens: 8192, osl_tokens: 1024}",
        "slo": "{ttft_ms_max: 2000}",
        "cluster": "{max_gpus: 72}",
    }
    return examples.get(dotted, "{field: value}")


def _check_scenarios(values: list[Any], instance: Instance, path: str | Path) -> None:
    known = ", ".join(sorted(instance.scenarios)) or "none"
    for value in values:
        if value is not None and not isinstance(value, str):
            raise SpecError(
                f"scenario values are scenario names or null (no scenario); got {excerpt(value)}",
                path=path,
                field=f"axes.{SCENARIO_AXIS}",
            )
        if value is not None and value not in instance.scenarios:
            raise SpecError(
                f"unknown scenario '{value}' of the base instance; it defines: {known} "
                "(null runs the instance as is)",
                path=path,
                field=f"axes.{SCENARIO_AXIS}",
            )


def _flatten(dotted: str, value: Any) -> dict[str, Any]:
    """A group's mapping becomes one dotted override per field, so unnamed fields keep their values."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(f"{dotted}.{key}", inner))
        return out
    return {dotted: value}


def _relative_to(grid_path: str | Path, name_or_path: str) -> str:
    """A relative YAML path is taken relative to the grid file when it exists there."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and not candidate.is_absolute():
        beside = Path(grid_path).parent / candidate
        if beside.is_file():
            return str(beside)
    return name_or_path


def _show(value: Any) -> str:
    """A value as it would be written in the grid (YAML flow style)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)


def _hint(word: str, allowed: Any) -> str:
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
