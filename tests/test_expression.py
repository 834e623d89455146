"""harness.run.expression reads `-k`/`-m` expressions as pytest does: cross-checked against pytest's own
evaluator (a private module, imported here in the tests only, never by the harness)."""

from __future__ import annotations

import itertools

import pytest

from harness.run.expression import ExpressionError, evaluate

EXPRESSIONS = [
    "static",
    "not static",
    "static and not sim",
    "sim or gpu",
    "schema-valid and not wrong or dupkey and yaml",
    "not (static or sim) and gpu",
    "(static)",
    "not not gpu",
    "qwen3-32b/vllm/agg and image-reference-pinned",
    "a or b and c",
    "(a or b) and c",
]
NAMES = ["static", "sim", "gpu", "schema-valid", "wrong", "dupkey", "yaml", "a", "b", "c"]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_evaluates_as_pytest_does(expr):
    from _pytest.mark.expression import Expression

    compiled = Expression.compile(expr)
    for present in itertools.chain.from_iterable(itertools.combinations(NAMES, n) for n in (0, 1, 2, 3)):

        def match(name: str, present: tuple[str, ...] = present, **kw: object) -> bool:
            return any(name in p for p in present)

        assert evaluate(expr, lambda n: match(n)) == compiled.evaluate(match), (expr, present)


@pytest.mark.parametrize("expr", ["static and", "(static", "static)", "and", "static = 1", 'device(serial="1")'])
def test_what_it_cannot_read_is_an_error(expr):
    with pytest.raises(ExpressionError):
        evaluate(expr, lambda n: True)


def test_empty_is_true():
    assert evaluate("", lambda n: False) and evaluate("   ", lambda n: False)
