"""The interpreter of guidance text: it walks the :mod:`ast` of a text that
:func:`framework.guidance.syntax.parse` has checked for size, over a whitelist of node types, and
builds the expression (see :mod:`framework.guidance.syntax` for the syntax).

Only the functions of :data:`FUNCTIONS` (inside ``cond(name=...)`` also :data:`VALUE_FUNCTIONS`)
and the methods of :data:`METHODS` can be called; nothing is passed to ``eval``, no attribute is
looked up by a name taken from the text, and every mistake is a :class:`GuidanceSyntaxError`
with a caret under the offending column.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable
from typing import Any

from framework.core.errors import UserError
from framework.guidance import branches as b
from framework.guidance import presets
from framework.guidance.expr import Expr
from framework.guidance.schedules import Weight, const, cosine, linear, window

__all__ = ["FUNCTIONS", "MAX_INT", "METHODS", "VALUE_FUNCTIONS", "GuidanceSyntaxError", "Interpreter"]

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
    "cond": b.cond,
    "uncond": b.uncond,
    # schedules
    "const": const, "linear": linear, "cosine": cosine, "window": window,
    # perturbations
    "attn_identity": lambda layers=None: b.AttnIdentity(_layers(layers)),
    "attn_blur": lambda sigma=10.0, layers=None: b.AttnBlur(_layers(layers), float(sigma)),
    "skip_layers_perturbation": lambda layers=None: b.SkipLayers(_layers(layers)),
    "time_shift": lambda delta: b.TimeShift(None, float(delta)),
    # presets
    **{name: getattr(presets, name) for name in presets.__all__},
}
# Inside cond(name=...), these construct condition values instead.
VALUE_FUNCTIONS: dict[str, Callable[..., Any]] = {"independent": b.independent, "noised": b.noised}
METHODS = ("on", "perturbed", "within")


def _flag(node: ast.AST) -> bool | None:
    """``true``/``false`` (also ``True``/``False``) as a keyword value, else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id.lower() in ("true", "false"):
        return node.id.lower() == "true"
    return None


class Interpreter:
    """Evaluates the :mod:`ast` of one guidance text into an expression (:meth:`eval`)."""

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
                return b.uncond()
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
