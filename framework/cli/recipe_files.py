"""``polyguide fit``'s recipe files, checked before OmegaConf or jsonargparse read them.

Each ``--config`` file must be a readable regular file (a FIFO never blocks) of at most
:data:`MAX_BYTES`, hold valid YAML (an unclosed bracket, a tab indent or a ``!!python/…`` tag is
one line naming the file, line and column; tags are never constructed: only the safe loader's
plain types exist), and expand to at most :data:`MAX_NODES` nodes once its anchors and aliases are
followed, so an "alias bomb" (a few lines whose aliases nest into billions of nodes) is refused
before anything expands it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from framework.core.errors import ArgumentError
from framework.core.files import regular_file

__all__ = ["MAX_BYTES", "MAX_NODES", "check_recipe", "check_recipes", "config_paths"]

MAX_BYTES = 1_000_000
MAX_NODES = 100_000


def config_paths(args: Sequence[str]) -> list[str]:
    """The files given as ``--config FILE`` or ``--config=FILE`` in ``args``."""
    paths = []
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            paths.append(args[i + 1])
        elif a.startswith("--config="):
            paths.append(a.partition("=")[2])
    return paths


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of ``root`` with every alias followed (shared nodes counted at each use), computed
    with one visit per distinct node, so a bomb costs nothing to measure."""
    sizes: dict[int, int] = {}
    order, stack, seen = [], [root], set()
    while stack:  # post-order over the distinct nodes
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
    for node in reversed(order):
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        sizes[id(node)] = min(1 + sum(sizes.get(id(c), 1) for c in children), 10 * MAX_NODES)
    return sizes[id(root)]


def check_recipe(path: str | Path) -> None:
    """Raise :class:`~framework.core.errors.ArgumentError` (one line) unless ``path`` is a recipe
    file that can be read safely (see the module docstring)."""
    path = regular_file(path, "config file", ArgumentError)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ArgumentError(f"config file {path} has {size:,} bytes; a recipe has at most {MAX_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ArgumentError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # structure only: nothing is constructed yet
        if node is not None and _expanded_size(node) > MAX_NODES:
            raise ArgumentError(f"config file {path}: its aliases expand to more than {MAX_NODES:,} "
                                f"values (an alias bomb?); refused")
        yaml.load(text, Loader=yaml.SafeLoader)  # tags: the safe loader refuses every !!python/...
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        detail = " ".join(f"{context + ': ' if context else ''}{problem}".split())[:200]
        raise ArgumentError(f"config file {path} is not valid YAML{where}: {detail}") from None


def check_recipes(args: Sequence[str]) -> None:
    """:func:`check_recipe` on every ``--config`` file of ``args``."""
    for path in config_paths(args):
        check_recipe(path)
