"""The one YAML loader of idard: bounded in bytes, nodes and expanded text.

Every YAML file idard reads goes through `read_yaml_file` or `load_yaml`: suites, the run
directory's copy of its suite (``suite.yaml``, read by ``report``), cluster files. YAML is
small data here (a suite is a short list of names), and a few kilobytes of it can ask for
gigabytes through aliases, which PyYAML builds as shared objects that every later
``str()``, ``repr()`` or ``yaml.safe_dump`` writes out in full:

* nested aliases ("billion laughs"): 412 bytes name 9**10 nodes;
* one long scalar aliased ~57,000 times, under any node limit: a 4.4 KB suite gave a
  231 MB error message, a 16 KB suite a 922 MB ``description`` (2.5 GB of memory).

So a document is refused, before anything is built from it, when its file holds more
than `MAX_YAML_BYTES` bytes, or when, with every alias expanded, it holds more than
`MAX_YAML_NODES` nodes or more than `MAX_YAML_BYTES` characters of scalar text. Both are
counted on the parsed node graph without expanding it (an alias is the node it names).
Duplicate keys are refused too (PyYAML keeps the last one silently).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

#: The most YAML nodes a document may hold once its aliases are expanded: real suites
#: hold hundreds; a few hundred bytes of nested aliases would hold billions.
MAX_YAML_NODES = 100_000
#: The most bytes a YAML file may hold, and the most characters of scalar text its
#: document may hold once its aliases are expanded (real suites hold a few kilobytes).
MAX_YAML_BYTES = 1 << 20
#: The most characters of a value an error message quotes.
MAX_QUOTE = 200


class YAMLRefused(ValueError):
    """A YAML document refused before it was built (too large once expanded, recursive,
    or holding a key twice); the message says which bound it passed."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys (the last silently won)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base class says so
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {quote(key)} (a YAML mapping holds each key once)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def expanded_size(root: yaml.Node, max_nodes: int, max_chars: int) -> tuple[int, int]:
    """(nodes, characters of scalar text) of the document with every alias expanded,
    counted without expanding it: an alias is the same node object, so each node's size
    is computed once. Each count stops just past its limit."""
    sizes: dict[int, tuple[int, int]] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise YAMLRefused("an alias refers to a node that contains it (a recursive document)")
        in_progress.add(key)
        if isinstance(node, yaml.ScalarNode):
            children: list[yaml.Node] = []
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = [n for pair in node.value for n in pair]
        nodes, chars = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0
        for child in children:
            child_nodes, child_chars = size(child)
            nodes, chars = min(nodes + child_nodes, max_nodes + 1), min(chars + child_chars, max_chars + 1)
        in_progress.discard(key)
        sizes[key] = (nodes, chars)
        return sizes[key]

    try:
        return size(root)
    except RecursionError:
        raise YAMLRefused("nested too deeply") from None


def load_yaml(text: str, max_nodes: int = MAX_YAML_NODES, max_chars: int = MAX_YAML_BYTES) -> Any:
    """``yaml.safe_load`` of one document, refusing (`YAMLRefused`) duplicate keys and
    documents past the bounds of this module before anything is built from them; raises
    ``yaml.YAMLError`` for text that is not YAML."""
    if len(text) > max_chars:
        raise YAMLRefused(f"{len(text):,} characters, more than the {max_chars:,} a YAML file here may hold")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        nodes, chars = expanded_size(node, max_nodes, max_chars)
        if nodes > max_nodes:
            raise YAMLRefused(f"more than {max_nodes} YAML nodes once its aliases are expanded "
                              "(nested aliases: a suite is a short list of names)")
        if chars > max_chars:
            raise YAMLRefused(f"more than {max_chars:,} characters of text once its aliases are expanded "
                              "(a long value named by many aliases)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_bounded(path: str | Path, limit: int = MAX_YAML_BYTES) -> str:
    """The text of a small file, read no further than ``limit`` bytes: a file past it is
    refused (`YAMLRefused`) without reading it all. OSError and UnicodeDecodeError pass."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    return checked_text(data, limit)


def checked_text(data: bytes, limit: int = MAX_YAML_BYTES) -> str:
    """``data`` (read as at most ``limit + 1`` bytes) as UTF-8 text, refused past ``limit``."""
    if len(data) > limit:
        raise YAMLRefused(f"more than {limit:,} bytes, more than a YAML file here may hold")
    return data.decode()


def read_yaml_file(path: str | Path, what: str, error: type[Exception],
                   loader: Callable[[str], Any] = load_yaml) -> Any:
    """The parsed, not yet validated content of the YAML file ``path`` (a ``what``: "suite
    file", "cluster file"), read by ``loader``. Every way it can fail (absent, unreadable,
    too big, an alias bomb, not YAML) is one ``error`` whose message names the file."""
    path = Path(path)
    try:
        text = read_bounded(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except YAMLRefused as exc:
        raise error(f"{path}: refused: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what} ({exc})") from None
    try:
        return loader(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {yaml_error_line(exc)}") from None
    except (ValueError, RecursionError) as exc:  # the loader's own refusals (YAMLRefused is a ValueError)
        raise error(f"{path}: refused: {exc}") from None


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (with a snippet of the offending line) on one line."""
    return clip(" ".join(str(exc).split()), 400)


def quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters without
    building the whole repr first (a value may be a list of many long strings)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    short.maxlevel = 3
    return clip(short.repr(value), limit)


def clip(message: str, limit: int = 600) -> str:
    """``message`` cut to ``limit`` characters, saying how many were left out."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}… ({len(message) - limit:,} more characters)"
