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
import difflib
import math
import warnings
from collections.abc import Callable
from typing import Any

from framework.core.errors import UserError
from framework.guidance import presets
from framework.guidance.branches import (
    AttnBlur,
    AttnIdentity,
    SkipLayers,
    TimeShift,
    cond,
    independent,
    noised,
    uncond,
)
from framework.guidance.expr import PROBE_TAUS, Expr
from framework.guidance.schedules import Weight, const, cosine, linear, window

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
#: Whole numbers beyond ±2⁵³ are not exactly representable as weights.
MAX_INT = 2**53
#: Shown around the caret when the text is long.
_CONTEXT = 60

_ARITH = {ast.Add: ("+", lambda a, b: a + b), ast.Sub: ("-", lambda a, b: a - b),
          ast.Mult: ("*", lambda a, b: a * b), ast.Div: ("/", lambda a, b: a / b)}
_OP_SYMBOLS = {ast.Pow: "**", ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
               ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}
# exceptions a function of the whitelist may raise for arguments it cannot use
_ARGUMENT_ERRORS = (TypeError, ValueError, AttributeError, LookupError, ArithmeticError)


class GuidanceSyntaxError(UserError, ValueError):
    """Malformed guidance text; the message points at the offending column.

    Attributes:
        text: the (stripped) guidance text.
        col: 0-based character column of the problem, or ``None`` when it has no position.
    """

    def __init__(self, message: str, text: str, col: int | None) -> None:
        self.text, self.col = text, col
        super().__init__(f"{message}{_excerpt(text, col)}")


def _excerpt(text: str, col: int | None) -> str:
    """The text (cut to a window around ``col`` when long) with a caret line under ``col``."""
    lo, hi = 0, len(text)
    if hi > 2 * _CONTEXT + 20:
        centre = col if col is not None else 0
        lo, hi = max(0, centre - _CONTEXT), min(len(text), centre + _CONTEXT)
    body = "".join(ch if ch.isprintable() else "\ufffd" for ch in text[lo:hi])  # one column each
    shown = ("…" if lo else "") + body + ("…" if hi < len(text) else "")
    if col is None:
        return f"\n  {shown}"
    return f"\n  {shown}\n  {' ' * (col - lo + (1 if lo else 0))}^"


def _layers(layers: Any = None) -> tuple[int, ...] | None:
    if layers is None:
        return None
    return tuple(int(i) for i in (layers if isinstance(layers, (list, tuple)) else [layers]))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "cond": cond,
    "uncond": uncond,
    # schedules
    "const": const, "linear": linear, "cosine": cosine, "window": window,
    # perturbations
    "attn_identity": lambda layers=None: AttnIdentity(_layers(layers)),
    "attn_blur": lambda sigma=10.0, layers=None: AttnBlur(_layers(layers), float(sigma)),
    "skip_layers_perturbation": lambda layers=None: SkipLayers(_layers(layers)),
    "time_shift": lambda delta: TimeShift(None, float(delta)),
    # presets
    **{name: getattr(presets, name) for name in presets.__all__},
}
# Inside cond(name=...), these construct condition values instead.
VALUE_FUNCTIONS: dict[str, Callable[..., Any]] = {"independent": independent, "noised": noised}
METHODS = ("on", "perturbed", "within")


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


class _Interpreter:
    def __init__(self, text: str) -> None:
        self.text = text
        self._bytes = text.encode("utf-8")

    # -- positions: ast columns are UTF-8 byte offsets; carets are character columns
    def char_col(self, byte_col: int) -> int:
        return len(self._bytes[:byte_col].decode("utf-8", errors="ignore"))

    def col(self, node: ast.AST | None) -> int | None:
        c = getattr(node, "col_offset", None)
        return None if c is None else self.char_col(c)

    def end_col(self, node: ast.AST) -> int:
        return self.char_col(node.end_col_offset)

    def find(self, symbol: str, lo: int, hi: int | None = None) -> int | None:
        """Column of ``symbol`` in ``text[lo:hi]`` (an operator or a method's dot)."""
        i = self.text.find(symbol, lo, len(self.text) if hi is None else hi)
        return None if i < 0 else i

    def operator_col(self, node: ast.BinOp) -> int | None:
        symbol = _ARITH.get(type(node.op), (_OP_SYMBOLS.get(type(node.op), ""),))[0]
        lo, hi = self.end_col(node.left), self.col(node.right)
        return (self.find(symbol, lo, hi) if symbol else None) or self.col(node)

    def attr_col(self, node: ast.Attribute) -> int | None:
        """Column of the attribute's name (after the dot), not of the object it is read from."""
        dot = self.find(".", self.end_col(node.value))
        if dot is None:
            return self.col(node)
        i = dot + 1
        while i < len(self.text) and self.text[i].isspace():
            i += 1
        return i

    def fail(self, message: str, node: ast.AST | None = None, col: int | None = None) -> GuidanceSyntaxError:
        return GuidanceSyntaxError(message, self.text, col if col is not None else self.col(node))

    # -- evaluation
    def eval(self, node: ast.AST, as_name: bool = False) -> Any:
        """Evaluate ``node``. ``as_name``: bare names are strings (inside calls)."""
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise self.fail(f"names starting with '__' are not allowed: {node.id!r}", node)
            if node.id == "uncond":
                return uncond()
            if as_name:
                return node.id
            raise self.fail(f"unknown name {node.id!r}: write conditions inside cond(...), "
                            f"e.g. cond({node.id}), or use 'uncond'", node)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.eval(e, as_name=True) for e in node.elts]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.eval(node.operand, as_name)
            self.operand(v, node.operand)
            negate = isinstance(node.op, ast.USub)
            return self.arith(lambda a: -a if negate else a, (v,), node, self.col(node))
        if isinstance(node, ast.BinOp):
            return self.binop(node, as_name)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            raise self.fail(f"attributes cannot be read ({node.attr!r}); only the methods "
                            f"{', '.join('.' + m + '()' for m in METHODS)} can be called",
                            col=self.attr_col(node))
        raise self.fail(f"unsupported syntax ({type(node).__name__}); allowed: numbers, names, "
                        f"lists, + - * /, function calls and .on/.perturbed/.within", node)

    def constant(self, node: ast.Constant) -> Any:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise self.fail(f"unsupported literal {v!r}"[:200], node)
        if isinstance(v, int) and abs(v) > MAX_INT:
            raise self.fail(f"the number {self.text[self.col(node):self.end_col(node)][:40]} is too large: "
                            f"whole numbers must be within ±2**53", node)
        if isinstance(v, float) and not math.isfinite(v):
            raise self.fail(f"the number {self.text[self.col(node):self.end_col(node)][:40]} is not "
                            f"finite (it overflows a float)", node)
        return v

    def operand(self, v: Any, node: ast.AST) -> None:
        """Arithmetic takes numbers, schedules and expressions — not names, strings or lists."""
        if isinstance(v, str):
            raise self.fail(f"{v!r} is a name, not a value: did you mean cond({v})?", node)
        if isinstance(v, bool) or not isinstance(v, (int, float, Weight, Expr)):
            raise self.fail(f"arithmetic needs numbers, schedules or guidance expressions, "
                            f"not {type(v).__name__}", node)

    def arith(self, fn: Callable[..., Any], args: tuple, node: ast.AST, col: int | None) -> Any:
        try:
            out = fn(*args)
        except _ARGUMENT_ERRORS as e:
            raise self.fail(str(e), node, col) from None
        if isinstance(out, float) and not math.isfinite(out):
            raise self.fail("the arithmetic overflows: the result is not a finite number", node, col)
        if isinstance(out, int) and abs(out) > MAX_INT:
            raise self.fail("the arithmetic gives a whole number beyond ±2**53", node, col)
        return out

    def binop(self, node: ast.BinOp, as_name: bool) -> Any:
        # a long chain `a + b - c ...` is a left-leaning spine: walk it iteratively
        spine: list[ast.BinOp] = []
        left: ast.AST = node
        while isinstance(left, ast.BinOp):
            spine.append(left)
            left = left.left
        acc = self.eval(left, as_name)
        for op_node in reversed(spine):
            if type(op_node.op) not in _ARITH:
                symbol = _OP_SYMBOLS.get(type(op_node.op), type(op_node.op).__name__)
                raise self.fail(f"unsupported operator {symbol!r} ({type(op_node.op).__name__}); "
                                f"use + - * /", col=self.operator_col(op_node))
            self.operand(acc, op_node.left)
            right = self.eval(op_node.right, as_name)
            self.operand(right, op_node.right)
            acc = self.arith(_ARITH[type(op_node.op)][1], (acc, right), op_node, self.operator_col(op_node))
        return acc

    def call(self, node: ast.Call, value_context: bool = False) -> Any:
        if isinstance(node.func, ast.Attribute):
            return self.method(node)
        if not isinstance(node.func, ast.Name):
            raise self.fail("only named functions can be called", node)
        name = node.func.id
        if name.startswith("__"):
            raise self.fail(f"names starting with '__' are not allowed: {name[:40]!r}", node.func)
        table = {**FUNCTIONS, **VALUE_FUNCTIONS} if value_context else FUNCTIONS
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise self.fail(f"unknown function {name[:40]!r}{hint} Available: "
                            f"{', '.join(sorted(table))}", node.func)
        args = [self.eval(a, as_name=True) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail("**kwargs are not supported", kw.value)
            if kw.arg.startswith("__"):
                raise self.fail(f"names starting with '__' are not allowed: {kw.arg!r}", kw)
            if name == "cond" and isinstance(kw.value, ast.Call):
                kwargs[kw.arg] = self.call(kw.value, value_context=True)
            elif name != "cond" and _flag(kw.value) is not None:  # cond(x=true) is a label
                kwargs[kw.arg] = _flag(kw.value)
            else:
                kwargs[kw.arg] = self.eval(kw.value, as_name=True)
        try:
            return table[name](*args, **kwargs)
        except _ARGUMENT_ERRORS as e:
            raise self.fail(f"in {name}(...): {e}", node) from None

    def method(self, node: ast.Call) -> Any:
        attr = node.func
        if attr.attr not in METHODS:
            raise self.fail(f"unknown method .{attr.attr[:40]}(); available: "
                            f"{', '.join('.' + m + '()' for m in METHODS)}", col=self.attr_col(attr))
        target = self.eval(attr.value)
        if not isinstance(target, Expr):
            raise self.fail(f".{attr.attr}() applies to a guidance expression, not {target!r}",
                            col=self.attr_col(attr))
        if any(kw.arg is None for kw in node.keywords):
            raise self.fail("**kwargs are not supported", node.keywords[0].value)
        args = [self.eval(a, as_name=attr.attr != "within") for a in node.args]
        kwargs = {kw.arg: self.eval(kw.value, as_name=attr.attr != "within") for kw in node.keywords}
        if attr.attr == "within":
            self.check_within(node, args, kwargs)
        try:
            return getattr(target, attr.attr)(*args, **kwargs)
        except _ARGUMENT_ERRORS as e:
            raise self.fail(f"in .{attr.attr}(...): {e}", col=self.attr_col(attr)) from None

    def check_within(self, node: ast.Call, args: list, kwargs: dict) -> None:
        """``.within(lo, hi)``: point at the argument that is out of range."""
        given = list(zip(node.args, args, strict=True)) + [
            (kw.value, kwargs[kw.arg]) for kw in node.keywords if kw.arg in ("lo", "hi")]
        for arg_node, v in given[:2]:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(f".within(lo, hi) takes progress values in [0, 1], got {v!r}", arg_node)
            if not 0.0 <= v <= 1.0:
                raise self.fail(f".within(lo, hi) takes progress values in [0, 1], got {v:g}", arg_node)
        if len(given) >= 2 and given[0][1] > given[1][1]:
            raise self.fail(f".within(lo, hi) needs lo ≤ hi, got lo={given[0][1]:g} > hi={given[1][1]:g}",
                            given[1][0])


def _normalise(text: str) -> str:
    """Tabs and line breaks become spaces (YAML block strings), so columns are single-line."""
    return "".join(" " if ch in "\t\n\r\v\f" else ch for ch in text).strip()


def _flag(node: ast.AST) -> bool | None:
    """``true``/``false`` (also ``True``/``False``) as a keyword value, else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id.lower() in ("true", "false"):
        return node.id.lower() == "true"
    return None


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
    interp = _Interpreter(stripped)
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
