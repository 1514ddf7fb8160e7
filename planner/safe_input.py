"""Reading untrusted YAML and JSON with every size bounded before the planner looks at the data.

Why it exists
    ``yaml.safe_load`` is safe against code execution but not against cost: a 1 KB
    file of nested aliases (a "billion laughs" bomb) expands to gigabytes as soon as
    anything walks it (an error message, ``model_dump()``), 20,000 levels of nesting
    overflow the recursion limit, and a repeated key silently keeps the last value.
    The loaders here refuse all of that up front, with a :class:`~planner.errors.SpecError`
    naming the file and the line:

    - a file larger than :data:`MAX_FILE_BYTES`, or not UTF-8 text;
    - nesting deeper than :data:`MAX_DEPTH` (YAML and JSON);
    - more than :data:`MAX_ALIASES` alias uses, a recursive alias, or a document whose
      aliases expand to more than :data:`MAX_EXPANDED_NODES` values;
    - a key repeated in one mapping (YAML and JSON).

    :func:`excerpt` shortens any value for an error message, so a bad value is quoted,
    never dumped whole.
"""

from __future__ import annotations

import json
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from planner.errors import SpecError

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest spec, grid, trace or config file read (the shipped ones are under 10 KB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (the deepest shipped spec has 4 levels)."""
MAX_ALIASES = 1_000
"""Most ``*alias`` uses in one YAML document."""
MAX_EXPANDED_NODES = 1_000_000
"""Most values a YAML document may hold once its aliases are expanded."""
EXCERPT_CHARS = 80
"""Longest quotation of a bad value in an error message."""

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = EXCERPT_CHARS
_REPR.maxother = EXCERPT_CHARS
for _name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_REPR, _name, 6)


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short ``repr`` of any value for an error message (nested and long values are elided)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # a cell read by pandas: show 0, not np.int64(0)
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _LimitError(yaml.YAMLError):
    """A YAML document over one of the size limits (reported like a syntax error, with its line)."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with depth and alias limits and duplicate keys refused."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        """Compose one node, counting aliases and nesting depth."""
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _LimitError(
                    f"more than {MAX_ALIASES} aliases; write the values out", self.peek_event().start_mark
                )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitError(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Node | None:
        """The document's root node, once its expanded size is checked."""
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        """A mapping, refusing a key that appears twice (merge keys ``<<`` may be overridden)."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:
                continue  # an unhashable key; the base constructor reports it
            if repeated:
                raise ConstructorError(
                    None,
                    None,
                    f"the key {excerpt(key)} appears twice in one mapping; keep one",
                    key_node.start_mark,
                )
            seen.add(key)
        return SafeConstructor.construct_mapping(self, node, deep=deep)


BoundedSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
"""``1e5`` is a number (YAML 1.2), not the string PyYAML's YAML 1.1 rules make of it."""


def _check_expansion(root: Node) -> None:
    """Refuse recursive aliases and documents that expand past :data:`MAX_EXPANDED_NODES` values."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_EXPANDED_NODES:
                raise _LimitError(
                    f"aliases expand to more than {MAX_EXPANDED_NODES:,} values; write the values out",
                    node.start_mark,
                )
            continue
        if key in sizes:
            continue
        if key in active:
            raise _LimitError("a recursive alias (a value that contains itself)", node.start_mark)
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise _LimitError("a recursive alias (a value that contains itself)", child.start_mark)
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def read_text(path: str | Path, fix: str = "save it as UTF-8 text") -> str:
    """A file's text: size-bounded and UTF-8, else a SpecError naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(
                f"the file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for an input; "
                "check it is the right file",
                path=path,
            )
        return path.read_bytes().decode("utf-8")
    except OSError as err:
        raise SpecError(f"cannot read file ({err.strerror}); check the path", path=path) from None
    except UnicodeDecodeError as err:
        raise SpecError(f"not UTF-8 text (byte {err.start} is invalid); {fix}", path=path) from None


def yaml_load(text: str) -> Any:
    """Parse YAML text with :class:`BoundedSafeLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_error_text(err: yaml.YAMLError) -> str:
    """``at line 3, column 5: <problem>`` for a PyYAML error (syntax or limit)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err)
    return f"{where}: {' '.join(str(problem).split())}"


def json_load(text: str, path: str | Path) -> Any:
    """Parse JSON text with the nesting depth bounded and repeated keys refused."""
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise SpecError(f"JSON nested {depth} levels deep, over the limit of {MAX_DEPTH}", path=path)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise SpecError(f"the key {excerpt(key)} appears twice in one object; keep one", path=path)
            out[key] = value
        return out

    return json.loads(text, object_pairs_hook=pairs)


def json_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` in JSON text, strings skipped (a linear scan)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
