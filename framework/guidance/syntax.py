"""A small, safe text syntax for guidance expressions (CLI flags, YAML configs).

    uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)
    cfg(text, 7.5) + 2*(cond(text) - cond(text).perturbed(attn_identity()))
    nested([image, text], [1.5, 7.5])
    apg(cfg(text, 9), eta=0, momentum=-0.5).within(0.2, 0.9)
    cond(color=red) + 3*(cond(color) - cond(color=red))       # negative value
    uncond + window(0.2, 0.8, 7.5)*(cond(text) - uncond)
    cfg(text, 3) + cost(trajectory, 2, through_model=true)   # cost-gradient term

The text is parsed with :mod:`ast` and interpreted by walking a whitelist of node types:
numbers, strings, bare names (condition names, network names and label values), lists,
``true``/``false`` (keyword values only),
``+ - * /``, calls of the functions listed in :data:`FUNCTIONS` and the methods
``.on()``, ``.perturbed()`` and ``.within()``. Nothing is ever passed to ``eval``, no
attribute of a Python object is ever looked up by a name taken from the text, and names
that start with ``__`` are refused.

Every malformed text raises :class:`GuidanceSyntaxError` with a caret under the offending
column — never another exception type. The size of what is accepted is bounded
(:data:`MAX_LENGTH` characters, nesting depth :data:`MAX_DEPTH`, :data:`MAX_TERMS` expression
nodes, :data:`MAX_BRANCHES` distinct branches), so parsing and planning stay fast.
"""

from __future__ import annotations

import ast
import warnings

from framework.guidance.expr import PROBE_TAUS, Expr
from framework.guidance.interpreter import FUNCTIONS, GuidanceSyntaxError, Interpreter
from framework.guidance.schedules import Weight

__all__ = ["FUNCTIONS", "MAX_BRANCHES", "MAX_DEPTH", "MAX_LENGTH", "MAX_TERMS", "GuidanceSyntaxError",
           "parse"]

#: Longest accepted text, in characters (the longest realistic guidance is a few hundred).
MAX_LENGTH = 2000
#: Deepest accepted nesting of parentheses, brackets, calls, methods and signs. A chain of
#: ``+``/``-``/``*``/``/`` at one level (``a + b + c ...``) does not add depth.
MAX_DEPTH = 32
#: Most nodes (branches, terms, operations) the built expression may have.
MAX_TERMS = 512
#: Most distinct branches (model evaluations per step) the expression may use.
MAX_BRANCHES = 64


def _nesting_column(text: str) -> int | None:
    """First column where brackets plus a run of signs nest deeper than :data:`MAX_DEPTH`."""
    depth = run = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch in "+-~":
            run += 1
        elif not ch.isspace():
            run = 0
        if depth + run > MAX_DEPTH:
            return i
    return None


def _ast_depth(tree: ast.AST) -> tuple[int, ast.AST]:
    """Deepest nesting of ``tree`` and a node at that depth (iterative: no recursion limit).

    The left operand of an arithmetic operator stays at its parent's depth, so a long sum
    ``a + b + c + ...`` is as shallow as ``a + b``.
    """
    deepest, at = 0, tree
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest, at = d, node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.operator, ast.unaryop, ast.expr_context)):
                continue
            same = isinstance(node, ast.BinOp) and child is node.left and isinstance(child, ast.BinOp)
            stack.append((child, d if same else d + 1))
    return deepest, at


def _count_nodes(expr: Expr, limit: int) -> int:
    """Nodes of ``expr`` (stops counting past ``limit``; iterative)."""
    n, stack = 0, [expr]
    while stack and n <= limit:
        node = stack.pop()
        n += 1
        stack.extend(node.children())
    return n


def _normalise(text: str) -> str:
    """Tabs and line breaks become spaces (YAML block strings), so columns are single-line."""
    return "".join(" " if ch in "\t\n\r\v\f" else ch for ch in text).strip()


def parse(text: str) -> Expr:
    """Parse guidance text into an expression (see the module docstring for the syntax).

    Raises:
        GuidanceSyntaxError: for any malformed text or text beyond the size bounds
            (:data:`MAX_LENGTH`, :data:`MAX_DEPTH`, :data:`MAX_TERMS`, :data:`MAX_BRANCHES`).
    """
    if not isinstance(text, str):
        raise GuidanceSyntaxError(f"guidance text must be a string, got {type(text).__name__}",
                                  repr(text)[:80], None)
    if not text.strip():
        raise GuidanceSyntaxError("empty guidance expression", text, None)
    stripped = _normalise(text)
    if len(stripped) > MAX_LENGTH:
        raise GuidanceSyntaxError(f"guidance text is {len(stripped)} characters; the limit is "
                                  f"MAX_LENGTH={MAX_LENGTH}", stripped, MAX_LENGTH)
    bad = next((i for i, ch in enumerate(stripped) if not ch.isprintable() and ch != " "), None)
    if bad is not None:
        raise GuidanceSyntaxError(f"control character {stripped[bad]!r} in guidance text", stripped, bad)
    deep = _nesting_column(stripped)
    if deep is not None:
        raise GuidanceSyntaxError(f"guidance nests deeper than MAX_DEPTH={MAX_DEPTH} (brackets and signs)",
                                  stripped, deep)
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal" in `1if`: an error here
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(stripped, mode="eval")
    except SyntaxError as e:
        col = min(max(e.offset - 1, 0), len(stripped)) if e.offset else None
        msg = (e.msg or "invalid syntax")[:200]
        raise GuidanceSyntaxError(f"malformed guidance: {msg}", stripped, col) from None
    except (RecursionError, MemoryError, ValueError) as e:  # pathological input the parser refuses
        raise GuidanceSyntaxError(f"malformed guidance: {type(e).__name__}: {str(e)[:200]}",
                                  stripped, None) from None
    interp = Interpreter(stripped)
    depth, at = _ast_depth(tree)
    if depth > MAX_DEPTH:
        raise interp.fail(f"guidance nests {depth} levels deep; the limit is MAX_DEPTH={MAX_DEPTH}", at)
    result = interp.eval(tree)
    if isinstance(result, (Weight, int, float)):
        raise GuidanceSyntaxError("the text evaluates to a number, not a guidance expression",
                                  stripped, 0)
    if not isinstance(result, Expr):
        raise GuidanceSyntaxError(f"the text evaluates to {result!r}, not a guidance expression"[:300],
                                  stripped, 0)
    nodes = _count_nodes(result, MAX_TERMS)
    if nodes > MAX_TERMS:
        raise GuidanceSyntaxError(f"the expression has more than MAX_TERMS={MAX_TERMS} terms and "
                                  f"operations", stripped, None)
    n_branches = len(result.branches())
    if n_branches > MAX_BRANCHES:
        raise GuidanceSyntaxError(f"the expression uses {n_branches} distinct branches (model "
                                  f"evaluations per step); the limit is MAX_BRANCHES={MAX_BRANCHES}",
                                  stripped, None)
    for tau in PROBE_TAUS:  # weights that overflow are an error of the text, not of a later step
        try:
            result.mass(tau)
        except (ArithmeticError, ValueError) as e:
            raise GuidanceSyntaxError(f"the guidance's weights are not finite numbers: {e}"[:300],
                                      stripped, None) from None
    return result
