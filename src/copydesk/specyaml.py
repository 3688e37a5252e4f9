"""The spec's YAML, read with bounds: aliases, nesting depth, expansion and duplicate keys are refused
while composing, before anything is expanded or constructed (`copydesk.spec` validates what it gives).

    data, lines = read_yaml(text, path)     # lines: each key's dotted path -> its 1-based line
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from copydesk.errors import SpecError

#: YAML aliases (`*name`) one spec may use.
MAX_YAML_ALIASES = 100
#: Nodes of the YAML document once every alias is expanded (what pydantic would walk).
MAX_YAML_NODES = 100_000
#: Nesting depth of the YAML document.
MAX_YAML_DEPTH = 64

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlong = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


def short(value: Any) -> str:
    """A repr of `value` shortened for messages (at most about 60 characters per string)."""
    try:
        return _repr.repr(value)
    except Exception:  # a repr that fails must not hide the real problem
        return f"<{type(value).__name__}>"


_MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with bounds: alias uses, nesting depth, and duplicate keys are
    refused while composing, before anything is expanded or constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases (*name) in one spec", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], yaml.Mark] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue
            ident = (key.tag, key.value)
            if ident in seen:
                first, again = seen[ident], key.start_mark
                where = (
                    f"on lines {first.line + 1} and {again.line + 1}"
                    if first.line != again.line
                    else f"twice on line {again.line + 1} (columns {first.column + 1} and {again.column + 1})"
                )
                raise yaml.composer.ComposerError(None, None, f"duplicate key {short(key.value)} {where}", again)
            seen[ident] = key.start_mark
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases would expand past MAX_YAML_NODES nodes, or refer to
    themselves. Each shared node is counted once per use, without expanding anything."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None, None,
                    f"the aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?)",
                    node.start_mark,
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise yaml.composer.ComposerError(None, None, "an alias refers to its own anchor", node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def read_yaml(text: str, path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """The document in `text` (read from `path`) and the line of each key (`line_index`), or a
    SpecError naming the file and the line."""
    try:
        loader = SpecLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character, checked before any parsing
        line = text.count("\n", 0, exc.position) + 1
        raise SpecError(
            f"{path}:{line}: invalid YAML: character {exc.character:#x} is not allowed in YAML text"
        ) from None
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(root)
        lines = line_index(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, lines


def nearest_line(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def line_index(root: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each mapping key's dotted path to its 1-based line in the YAML (a node shared
    through aliases is indexed where it is first reached, and walked once)."""
    index: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())] if root is not None else []
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, str(key.value) if isinstance(key, yaml.ScalarNode) else "?")
                index.setdefault(path, key.start_mark.line + 1)
                stack.append((value, path))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = (*prefix, str(i))
                index.setdefault(path, item.start_mark.line + 1)
                stack.append((item, path))
    return index
