"""pytest's `-k` and `-m` expression language, evaluated against a matcher of our own.

pytest has no public API to evaluate an expression, so this follows its documented grammar
("Specifying which tests to run": `-k` and `-m` take `and`, `or`, `not` and parentheses over
identifiers; docs.pytest.org/en/stable/how-to/usage.html) rather than importing its private module:

    expression: expr? EOF
    expr:       and_expr ('or' and_expr)*
    and_expr:   not_expr ('and' not_expr)*
    not_expr:   'not' not_expr | '(' expr ')' | ident
    ident:      (\\w|:|\\+|-|\\.|\\[|\\]|\\\\|/)+

A marker with keyword arguments (`-m "device(serial='123')"`) is outside what the harness needs:
it raises ExpressionError, and the callers fall back to "selected" (pytest itself still applies it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([\w:+\-.\[\]\\/]+)|(\S))")


class ExpressionError(ValueError):
    """The expression is not one this evaluator reads."""


def evaluate(expr: str, matcher: Callable[[str], bool]) -> bool:
    """The expression's value with each identifier replaced by `matcher(identifier)`; an empty
    expression is true."""
    tokens = _tokens(expr)
    if not tokens:
        return True
    value, pos = _or(tokens, 0, matcher)
    if pos != len(tokens):
        raise ExpressionError(f"unexpected {tokens[pos]!r} in {expr!r}")
    return value


def _tokens(expr: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:  # trailing whitespace
            break
        if m.group(4):
            raise ExpressionError(f"unexpected character {m.group(4)!r} in {expr!r}")
        out.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
    return out


def _or(tokens: list[str], pos: int, matcher: Callable[[str], bool]) -> tuple[bool, int]:
    value, pos = _and(tokens, pos, matcher)
    while pos < len(tokens) and tokens[pos] == "or":
        right, pos = _and(tokens, pos + 1, matcher)
        value = value or right
    return value, pos


def _and(tokens: list[str], pos: int, matcher: Callable[[str], bool]) -> tuple[bool, int]:
    value, pos = _not(tokens, pos, matcher)
    while pos < len(tokens) and tokens[pos] == "and":
        right, pos = _not(tokens, pos + 1, matcher)
        value = value and right
    return value, pos


def _not(tokens: list[str], pos: int, matcher: Callable[[str], bool]) -> tuple[bool, int]:
    if pos >= len(tokens):
        raise ExpressionError("expression ends early")
    tok = tokens[pos]
    if tok == "not":
        value, pos = _not(tokens, pos + 1, matcher)
        return not value, pos
    if tok == "(":
        value, pos = _or(tokens, pos + 1, matcher)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise ExpressionError("missing ')'")
        return value, pos + 1
    if tok in (")", "and", "or"):
        raise ExpressionError(f"unexpected {tok!r}")
    if pos + 1 < len(tokens) and tokens[pos + 1] == "(":
        raise ExpressionError(f"marker arguments ({tok}(...)) are not evaluated here")
    return matcher(tok), pos + 1
