"""A small, safe text syntax for guidance expressions (CLI flags, YAML configs).

    uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)
    cfg(text, 7.5) + 2*(cond(text) - cond(text).perturbed(attn_identity()))
    nested([image, text], [1.5, 7.5])
    apg(cfg(text, 9), eta=0, momentum=-0.5).within(0.2, 0.9)
    cond(color=red) + 3*(cond(color) - cond(color=red))       # negative value
    uncond + window(0.2, 0.8, 7.5)*(cond(text) - uncond)

The text is parsed with :mod:`ast` and interpreted by walking a whitelist of node types:
numbers, strings, bare names (condition names, network names and label values), lists,
``+ - * /``, calls of the functions listed in :data:`FUNCTIONS` and the methods
``.on()``, ``.perturbed()`` and ``.within()``. Nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable
from typing import Any

from ..errors import UserError
from . import presets
from .branches import (
    AttnBlur,
    AttnIdentity,
    SkipLayers,
    TimeShift,
    cond,
    independent,
    noised,
    uncond,
)
from .expr import Expr
from .schedules import Weight, const, cosine, linear, window

__all__ = ["FUNCTIONS", "GuidanceSyntaxError", "parse"]


class GuidanceSyntaxError(UserError, ValueError):
    """Malformed guidance text; the message points at the offending column."""

    def __init__(self, message: str, text: str, col: int | None) -> None:
        self.text, self.col = text, col
        where = f"\n  {text}\n  {' ' * col}^" if col is not None else f"\n  {text}"
        super().__init__(f"{message}{where}")


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


class _Interpreter:
    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, message: str, node: ast.AST | None) -> GuidanceSyntaxError:
        col = getattr(node, "col_offset", None)
        return GuidanceSyntaxError(message, self.text, col)

    def eval(self, node: ast.AST, as_name: bool = False) -> Any:
        """Evaluate ``node``. ``as_name``: bare names are strings (inside calls)."""
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise self.fail(f"unsupported literal {node.value!r}", node)
            return node.value
        if isinstance(node, ast.Name):
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
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            return self.binop(node, as_name)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(f"unsupported syntax ({type(node).__name__}); allowed: numbers, names, "
                        f"lists, + - * /, function calls and .on/.perturbed/.within", node)

    def binop(self, node: ast.BinOp, as_name: bool) -> Any:
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
               ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
        fn = ops.get(type(node.op))
        if fn is None:
            raise self.fail(f"unsupported operator {type(node.op).__name__}; use + - * /", node)
        a, b = self.eval(node.left, as_name), self.eval(node.right, as_name)
        for v, side in ((a, node.left), (b, node.right)):
            if isinstance(v, str):
                raise self.fail(f"{v!r} is a name, not a value: did you mean cond({v})?", side)
        try:
            return fn(a, b)
        except (TypeError, ValueError, ZeroDivisionError) as e:
            raise self.fail(str(e), node) from None

    def call(self, node: ast.Call, value_context: bool = False) -> Any:
        if isinstance(node.func, ast.Attribute):
            return self.method(node)
        if not isinstance(node.func, ast.Name):
            raise self.fail("only named functions can be called", node)
        name = node.func.id
        table = {**FUNCTIONS, **VALUE_FUNCTIONS} if value_context else FUNCTIONS
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise self.fail(f"unknown function {name!r}{hint} Available: "
                            f"{', '.join(sorted(table))}", node.func)
        args = [self.eval(a, as_name=True) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail("**kwargs are not supported", kw.value)
            if name == "cond" and isinstance(kw.value, ast.Call):
                kwargs[kw.arg] = self.call(kw.value, value_context=True)
            else:
                kwargs[kw.arg] = self.eval(kw.value, as_name=True)
        try:
            return table[name](*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise self.fail(f"in {name}(...): {e}", node) from None

    def method(self, node: ast.Call) -> Any:
        attr = node.func
        if attr.attr not in METHODS:
            raise self.fail(f"unknown method .{attr.attr}(); available: "
                            f"{', '.join('.' + m + '()' for m in METHODS)}", attr)
        target = self.eval(attr.value)
        if not isinstance(target, Expr):
            raise self.fail(f".{attr.attr}() applies to a guidance expression, not {target!r}",
                            attr)
        args = [self.eval(a, as_name=True) for a in node.args]
        kwargs = {kw.arg: self.eval(kw.value, as_name=True) for kw in node.keywords}
        try:
            return getattr(target, attr.attr)(*args, **kwargs)
        except (TypeError, ValueError, AttributeError) as e:
            raise self.fail(f"in .{attr.attr}(...): {e}", node) from None


def parse(text: str) -> Expr:
    """Parse guidance text into an expression (see the module docstring for the syntax)."""
    if not isinstance(text, str) or not text.strip():
        raise GuidanceSyntaxError("empty guidance expression", str(text), None)
    stripped = text.strip()
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as e:
        col = (e.offset - 1) if e.offset else None
        raise GuidanceSyntaxError(f"malformed guidance: {e.msg}", stripped, col) from None
    result = _Interpreter(stripped).eval(tree)
    if isinstance(result, (Weight, int, float)):
        raise GuidanceSyntaxError("the text evaluates to a number, not a guidance expression",
                                  stripped, 0)
    if not isinstance(result, Expr):
        raise GuidanceSyntaxError(f"the text evaluates to {result!r}, not a guidance expression",
                                  stripped, 0)
    return result
