"""``--expect``: what the service should answer, scored against the stream's ground truth.

``status==402 if is_anomaly`` reads "the service flags an event by answering 402, and it should
flag exactly the anomalous ones". The part before ``if`` is the prediction, over ``status`` (the
HTTP status code) and ``response`` (the JSON body: ``response.decision`` or
``response["risk"]["level"]``); the part after it is the truth, over the event: ``is_anomaly``,
``label`` (``label == 'fraud.card_testing'``) and any of its columns (``amount > 1000 and channel ==
"online"``); without ``if`` the truth is ``is_anomaly``. Each answered request then falls into
tp/fp/fn/tn; a request of several events (``--batch``) is true when any of its events is.

The text is parsed with Python's :mod:`ast` and walked by a small interpreter that knows only
comparisons, ``and``/``or``/``not``, literals and those names -- never ``eval``: the expression
comes from a command line and the values from a service under test.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from streamsynth.connectors.loadtest.requests import UNLABELLED

from streamsynth.contract import IS_ANOMALY, LABEL, NORMAL
from streamsynth.errors import StreamsynthError

PREDICTION_NAMES = ("status", "response")
_HINT = ("write PREDICTION if TRUTH, e.g. --expect 'status==402 if is_anomaly' or "
         "--expect \"response.decision=='deny' if label!='normal'\"")
_COMPARE = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def _bad(text: str, why: str) -> StreamsynthError:
    return StreamsynthError(f"--expect {text!r}: {why}", hint=_HINT)


def _check(node: ast.AST, allowed: tuple[str, ...], text: str) -> None:
    """Refuse every node the interpreter does not know, and names outside ``allowed``."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, allowed, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, allowed, text)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise _bad(text, "only ==, !=, <, <=, >, >=, in and not in compare")
        for value in [node.left, *node.comparators]:
            _check(value, allowed, text)
    elif isinstance(node, ast.Name):
        _check_name(node.id, allowed, text)
    elif isinstance(node, ast.Attribute):
        _check_field_base(node.value, allowed, text)
    elif isinstance(node, ast.Subscript):
        if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str | int)):
            raise _bad(text, "index a response field with a literal, e.g. response['risk']")
        _check_field_base(node.value, allowed, text)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float | str | bool | type(None)):
            raise _bad(text, f"{node.value!r} is not a number, string, True, False or None")
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for value in node.elts:
            if not isinstance(value, ast.Constant):
                raise _bad(text, "a list to compare with 'in' holds literals only, e.g. status in (402, 403)")
            _check(value, allowed, text)
    else:
        raise _bad(text, f"{ast.unparse(node)!r} is not a comparison, name or literal")


def _check_name(name: str, allowed: tuple[str, ...], text: str) -> None:
    """The prediction reads only ``allowed`` (the answer); the truth reads the event, any column of
    it, but never the answer (``allowed`` empty)."""
    if allowed and name not in allowed:
        raise _bad(text, f"{name!r} cannot be used before 'if' (the prediction); use {' or '.join(allowed)} there")
    if not allowed and name in PREDICTION_NAMES:
        raise _bad(text, f"{name!r} is the answer, not the truth: after 'if' use is_anomaly, label "
                   "or the event's columns")


def _check_field_base(node: ast.AST, allowed: tuple[str, ...], text: str) -> None:
    """A field access must start at ``response`` (the only structured value)."""
    root = node
    while isinstance(root, ast.Attribute | ast.Subscript):
        root = root.value
    if not (isinstance(root, ast.Name) and root.id == "response"):
        raise _bad(text, f"{ast.unparse(node)!r}: only response has fields")
    _check(node, allowed, text)


def _evaluate(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, env) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        return not _evaluate(node.operand, env)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, env)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, env)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:  # a field of another type than the literal (None < 5): not a match
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _evaluate(node.value, env)
        return base.get(node.attr) if isinstance(base, dict) else None
    if isinstance(node, ast.Subscript):
        base = _evaluate(node.value, env)
        key = node.slice.value  # type: ignore[attr-defined]  # checked: a literal
        if isinstance(base, dict):
            return base.get(key)
        if isinstance(base, list) and isinstance(key, int) and -len(base) <= key < len(base):
            return base[key]
        return None
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [_evaluate(v, env) for v in node.elts]
    raise AssertionError(f"unchecked node {node!r}")  # _check admits nothing else


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


@dataclass(frozen=True)
class Expectation:
    """A parsed ``--expect``: call :meth:`predict` on an answer and :meth:`truth` on the events."""

    text: str
    prediction: ast.expr
    truth_expr: ast.expr

    @classmethod
    def parse(cls, text: str) -> Expectation:
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            tree = None
        if isinstance(tree, ast.IfExp):
            raise _bad(text, "there is no 'else': the truth after 'if' decides")
        if tree is not None:
            prediction, truth = tree, ast.Name("is_anomaly", ast.Load())
        else:
            # "PRED if TRUTH" is Python's conditional expression without its else; adding one lets
            # the parser find the 'if' with Python's precedence (not a split on the text).
            try:
                tree = ast.parse(f"{text.strip()} else None", mode="eval").body
            except SyntaxError as exc:
                raise _bad(text, f"cannot parse it ({exc.msg})") from None
            if not isinstance(tree, ast.IfExp):
                raise _bad(text, "cannot parse it")
            prediction, truth = tree.body, tree.test
        _check(prediction, PREDICTION_NAMES, text)
        _check(truth, (), text)
        return cls(text=text, prediction=prediction, truth_expr=truth)

    @property
    def needs_response(self) -> bool:
        """Whether the prediction reads the JSON body (else it is not parsed)."""
        return "response" in _names(self.prediction)

    @property
    def columns(self) -> list[str]:
        """The event columns the truth reads (label and is_anomaly among them)."""
        return sorted(_names(self.truth_expr))

    def check(self, columns: list[str]) -> None:
        """Refuse a truth reading a column the stream lacks (before the first request leaves); a
        source without labels is "unlabelled", so only is_anomaly and the other columns must exist."""
        for name in self.columns:
            if name == IS_ANOMALY and name not in columns:
                raise StreamsynthError(f"--expect {self.text!r} reads is_anomaly, which the source lacks",
                                       hint="state the truth with label (e.g. \"if label != 'normal'\") or "
                                       "use a labelled source")
            if name != LABEL and name not in columns:
                raise StreamsynthError(f"--expect {self.text!r} reads column {name!r}, which the source "
                                       "does not have", hint=f"the source's columns: {', '.join(columns)}")

    def predict(self, status: int, body: bytes) -> bool:
        response = None
        if self.needs_response:
            try:
                response = json.loads(body) if body else None
            except (ValueError, UnicodeDecodeError):
                response = None  # not JSON: every field reads as None
        return bool(_evaluate(self.prediction, {"status": status, "response": response}))

    def truth(self, event: dict[str, Any]) -> bool:
        """Whether the service should flag ``event`` (column -> value)."""
        return bool(_evaluate(self.truth_expr, event))

    def truths(self, batch: pl.DataFrame) -> list[bool]:
        """The truth of each event of ``batch``: computed on the feeder thread with the requests, so
        the sending loop only counts; a missing label reads as the request's label does."""
        names = [n for n in self.columns if n in batch.columns]
        label = None if LABEL not in self.columns else NORMAL if LABEL in batch.columns else UNLABELLED
        rows = batch.select(names).iter_rows(named=True) if names else ({} for _ in range(batch.height))
        out = []
        for row in rows:
            if label is not None:
                row[LABEL] = row.get(LABEL) or label
            out.append(self.truth(row))
        return out


def precision(cells: Counter[str]) -> float | None:
    """tp / (tp + fp) of a confusion matrix's cells (overall or one label's); None when nothing was flagged."""
    flagged = cells["tp"] + cells["fp"]
    return cells["tp"] / flagged if flagged else None


def recall(cells: Counter[str]) -> float | None:
    """tp / (tp + fn); None without positives."""
    positives = cells["tp"] + cells["fn"]
    return cells["tp"] / positives if positives else None


@dataclass
class Confusion:
    """The confusion matrix of the answered requests, overall and per label."""

    counts: Counter[str] = field(default_factory=Counter)
    by_label: dict[str, Counter[str]] = field(default_factory=dict)
    unanswered: int = 0  # requests without a response: neither right nor wrong

    def add(self, label: str, predicted: bool, truth: bool) -> None:
        cell = ("tp" if truth else "fp") if predicted else ("fn" if truth else "tn")
        self.counts[cell] += 1
        self.by_label.setdefault(label, Counter())[cell] += 1

    def merge(self, other: Confusion) -> None:
        """Add another share's matrix to this one (``--workers``): the union of their counts."""
        self.counts.update(other.counts)
        for label, cells in other.by_label.items():
            self.by_label.setdefault(label, Counter()).update(cells)
        self.unanswered += other.unanswered

    @property
    def precision(self) -> float | None:
        return precision(self.counts)

    @property
    def recall(self) -> float | None:
        return recall(self.counts)

    def to_dict(self) -> dict[str, Any]:
        cells = ("tp", "fp", "fn", "tn")
        return {**{c: self.counts[c] for c in cells}, "precision": self.precision, "recall": self.recall,
                "unanswered": self.unanswered,
                "by_label": {label: {c: n[c] for c in cells} for label, n in sorted(self.by_label.items())}}
