"""A small, safe expression language for derived fields, compiled to polars expressions.

``"amount * 1.2 if channel == 'online' else amount"`` becomes one vectorised polars
expression. Python's parser reads the text; only arithmetic, comparisons, ``and/or/not``,
``x if c else y``, ``in [...]``, column names and a short list of functions are accepted, so
nothing in a schema file can run code.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from streamsynth.errors import StreamsynthError

#: Functions whose values are drawn per row, filled in by the generator as hidden columns.
RANDOM_FUNCTIONS = ("uniform", "normal", "noise")

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_UNARY_MATH = {
    "abs": lambda x: x.abs(),
    "log": lambda x: x.log(),
    "log10": lambda x: x.log10(),
    "exp": lambda x: x.exp(),
    "sqrt": lambda x: x.sqrt(),
    "floor": lambda x: x.floor(),
    "ceil": lambda x: x.ceil(),
    "sin": lambda x: x.sin(),
    "cos": lambda x: x.cos(),
    "int": lambda x: x.cast(pl.Int64),
    "float": lambda x: x.cast(pl.Float64),
    "str": lambda x: x.cast(pl.String),
    "bool": lambda x: x.cast(pl.Boolean),
}
FUNCTIONS = (*_UNARY_MATH, "round", "min", "max", "clip", "concat", *RANDOM_FUNCTIONS)
_WORDS = {"true": True, "false": False, "null": None}


@dataclass
class Compiled:
    """A compiled expression: the polars expression, the names it reads, its random calls."""

    expr: pl.Expr
    names: set[str] = field(default_factory=set)
    #: (function, argument) per random call; the generator fills column ``{prefix}{i}``.
    randoms: list[tuple[str, float | None]] = field(default_factory=list)
    prefix: str = "__r"


class _Compiler:
    def __init__(self, text: str, where: str, prefix: str) -> None:
        self.text, self.where, self.prefix = text, where, prefix
        self.names: set[str] = set()
        self.randoms: list[tuple[str, float | None]] = []

    def fail(self, what: str, hint: str | None = None) -> StreamsynthError:
        return StreamsynthError(
            f"{self.where}: {what} in expression {self.text!r}",
            hint=hint
            or f"expressions use column names, numbers, 'strings', + - * / // % **, comparisons, "
            f"and/or/not, 'x if cond else y', 'x in [..]' and the functions {', '.join(FUNCTIONS)}",
        )

    def visit(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"{type(node).__name__.lower()} is not allowed")
        return method(node)

    def _Expression(self, node: ast.Expression) -> pl.Expr:
        return _lit(self.visit(node.body))

    def _Constant(self, node: ast.Constant) -> Any:
        if node.value is not None and not isinstance(node.value, int | float | str | bool):
            raise self.fail(f"the constant {node.value!r} is not allowed")
        return pl.lit(node.value)

    def _Name(self, node: ast.Name) -> pl.Expr:
        if node.id in _WORDS:
            return pl.lit(_WORDS[node.id])
        self.names.add(node.id)
        return pl.col(node.id)

    def _BinOp(self, node: ast.BinOp) -> pl.Expr:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise self.fail(f"the operator {type(node.op).__name__} is not allowed")
        return op(_lit(self.visit(node.left)), _lit(self.visit(node.right)))

    def _UnaryOp(self, node: ast.UnaryOp) -> pl.Expr:
        value = _lit(self.visit(node.operand))
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return value
        if isinstance(node.op, ast.Not):
            return ~value
        raise self.fail(f"the operator {type(node.op).__name__} is not allowed")

    def _BoolOp(self, node: ast.BoolOp) -> pl.Expr:
        values = [_lit(self.visit(v)) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = (out & v) if isinstance(node.op, ast.And) else (out | v)
        return out

    def _Compare(self, node: ast.Compare) -> pl.Expr:
        left = _lit(self.visit(node.left))
        parts = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                options = self._constants(comparator)
                test = left.is_in(options)
                parts.append(~test if isinstance(op, ast.NotIn) else test)
                continue
            fn = _COMPARE.get(type(op))
            if fn is None:
                raise self.fail(f"the comparison {type(op).__name__} is not allowed")
            right = _lit(self.visit(comparator))
            parts.append(fn(left, right))
            left = right
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def _constants(self, node: ast.AST) -> list[Any]:
        if not isinstance(node, ast.List | ast.Tuple | ast.Set):
            raise self.fail("'in' needs a literal list, e.g. x in ['a', 'b']")
        values = []
        for elt in node.elts:
            if not isinstance(elt, ast.Constant):
                raise self.fail("lists after 'in' may hold only constants")
            values.append(elt.value)
        return values

    def _IfExp(self, node: ast.IfExp) -> pl.Expr:
        return (
            pl.when(_lit(self.visit(node.test)))
            .then(_lit(self.visit(node.body)))
            .otherwise(_lit(self.visit(node.orelse)))
        )

    def _Call(self, node: ast.Call) -> pl.Expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise self.fail(f"unknown function {name!r}", hint=f"functions are: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise self.fail("keyword arguments are not allowed")
        name = node.func.id
        if name in RANDOM_FUNCTIONS:
            return self._random(name, node.args)
        args = [_lit(self.visit(a)) for a in node.args]
        if name in _UNARY_MATH:
            self._arity(name, args, 1, 1)
            return _UNARY_MATH[name](args[0])
        if name == "round":
            self._arity(name, args, 1, 2)
            digits = 0
            if len(args) == 2:
                if not isinstance(node.args[1], ast.Constant) or not isinstance(node.args[1].value, int):
                    raise self.fail("round(x, n) needs a whole number n")
                digits = node.args[1].value
            return args[0].round(digits)
        if name in ("min", "max"):
            self._arity(name, args, 2, 32)
            return pl.min_horizontal(args) if name == "min" else pl.max_horizontal(args)
        if name == "clip":
            self._arity(name, args, 3, 3)
            return pl.min_horizontal(pl.max_horizontal(args[0], args[1]), args[2])
        self._arity(name, args, 1, 32)  # concat
        return pl.concat_str([a.cast(pl.String) for a in args])

    def _random(self, name: str, args: list[ast.expr]) -> pl.Expr:
        arg: float | None = None
        if name == "noise":
            if len(args) != 1 or not isinstance(args[0], ast.Constant) or not isinstance(
                args[0].value, int | float
            ) or args[0].value <= 0:
                raise self.fail("noise(period_seconds) needs one positive number")
            arg = float(args[0].value)
        elif args:
            raise self.fail(f"{name}() takes no arguments")
        column = f"{self.prefix}{len(self.randoms)}"
        self.randoms.append((name, arg))
        return pl.col(column)

    def _arity(self, name: str, args: list[Any], low: int, high: int) -> None:
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise self.fail(f"{name}() takes {want} arguments, got {len(args)}")


def _lit(value: Any) -> pl.Expr:
    return value if isinstance(value, pl.Expr) else pl.lit(value)


def compile_expr(text: str, where: str, prefix: str = "__r") -> Compiled:
    """Compile ``text``; ``where`` (file and key path) prefixes every error message."""
    if not isinstance(text, str) or not text.strip():
        raise StreamsynthError(f"{where}: expected a non-empty expression string")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise StreamsynthError(
            f"{where}: cannot parse expression {text!r}: {exc.msg}",
            hint="expressions are Python-like: amount * 1.2 if channel == 'online' else amount",
        ) from None
    compiler = _Compiler(text, where, prefix)
    expr = compiler.visit(tree)
    return Compiled(expr=expr, names=compiler.names, randoms=compiler.randoms, prefix=prefix)
