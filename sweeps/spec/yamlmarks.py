"""A YAML loader that remembers line numbers, refuses duplicate keys and reads 1e-3 as a float.

Aliases are expanded only after a check: a document whose aliases would expand to more than
``MAX_NODES`` nodes (an "alias bomb": a few hundred bytes of ``&a [*b, *b, …]`` or of nested
``<<:`` merges standing for billions of values) is refused from its node graph, in
milliseconds, before anything is built from it.

``load(text)`` gives plain-looking data whose mappings are ``LineDict`` (a dict that also knows the
line of each key) and whose sequences are ``LineList`` (a list that knows the line of each item),
so that a spec error can say "line 7". ``plain(x)`` turns them back into ordinary dicts and lists.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["LineDict", "LineList", "YamlError", "load", "plain", "MAX_NODES"]

MAX_NODES = 100_000
"""Most nodes a spec may stand for once its aliases are expanded (a real spec has hundreds)."""


class YamlError(ValueError):
    """The text is not YAML, or has a duplicate key; the message carries the line."""


class LineDict(dict):
    """A dict with ``line`` (its own first line) and ``lines`` (line of each key), 1-based."""

    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}


class LineList(list):
    """A list with ``line`` (its own first line) and ``lines`` (line of each item), 1-based."""

    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lines: list[int] = []


class _Loader(yaml.SafeLoader):
    """SafeLoader + line marks + duplicate-key refusal + YAML 1.2 style floats (1e-3)."""


# PyYAML follows YAML 1.1, where 1e-3 (no dot) is a string. Spec writers mean a number.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    data = LineDict()
    data.line = node.start_mark.line + 1
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise YamlError(f"line {key_node.start_mark.line + 1}: a mapping key must be a "
                            f"plain value, not {type(key).__name__}") from None
        if key in data:
            raise YamlError(f"{key}: duplicate key at line {key_node.start_mark.line + 1} "
                            f"(first at line {data.lines[key]})")
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    data = LineList()
    data.line = node.start_mark.line + 1
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.lines.append(item.start_mark.line + 1)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load(text: str) -> Any:
    """Parse one YAML document with line marks; YamlError (a ValueError) on bad YAML."""
    loader = _Loader(text)  # a SafeLoader subclass
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except YamlError:
        raise
    except RecursionError:
        raise YamlError("not valid YAML: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise YamlError(f"{where}not valid YAML: {problem}") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that stands for more than MAX_NODES nodes, or that contains itself.

    An alias is the same node object in several places, so the expanded size is counted once
    per distinct node (memoized), children before parents, without recursion."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        kids = _children(node)
        if children_done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            if size[key] > MAX_NODES:
                raise YamlError(f"line {node.start_mark.line + 1}: not valid YAML for a spec: "
                                f"its aliases expand to more than {MAX_NODES:,} values (an "
                                f"alias bomb?); write the values out or use fewer aliases")
            continue
        if key in open_:
            raise YamlError(f"line {node.start_mark.line + 1}: not valid YAML for a spec: an "
                            f"alias refers to a node that contains it")
        open_.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in open_:
                raise YamlError(f"line {k.start_mark.line + 1}: not valid YAML for a spec: an "
                                f"alias refers to a node that contains it")
            stack.append((k, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def plain(x: Any) -> Any:
    """LineDict/LineList (nested) → dict/list; anything else unchanged."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x
