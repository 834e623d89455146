"""Every registered check documents the source of truth it rests on (house style: what, why,
a failing example, the source), in a `Source:` paragraph that names something a reader can open."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.checks import all_checks

CHECKS = all_checks()

# Something concrete: a path (`dynamo/vllm/args.py`, `deploy/operator/...`), a file name with an
# extension, a code identifier in backticks, a document address (kubernetes.io/docs/...), an issue
# (`org/repo#123`), a named manual/spec section, or this catalogue's own convention.
_CONCRETE = re.compile(
    r"[\w.-]+/[\w.{},*<>-]+"  # a path or an address
    r"|\b[\w-]+\.(?:py|go|rs|md|yaml|json|toml)\b"  # a file
    r"|`[^`]+`"  # an identifier, flag or field
    r"|\bPEP \d+|\bYAML 1\.2\b|\bbash manual\b"  # a specification or manual
    r"|this catalogue's convention",
    re.IGNORECASE,
)


def source_paragraph(doc: str) -> str | None:
    """The docstring's `Source:` paragraph (`Source (ai-dynamo 1.4.0): ...` counts), else None."""
    for para in doc.split("\n\n")[1:]:  # the first paragraph is the why `recipe-harness checks` shows
        if re.match(r"Source\b[^:\n]*:", para.lstrip()):
            return para
    return None


def names_something_concrete(source: str) -> bool:
    body = source.split(":", 1)[1]
    return bool(_CONCRETE.search(body))


@pytest.mark.parametrize("chk", CHECKS, ids=[c.id for c in CHECKS])
def test_check_docstring_names_its_source(chk):
    source = source_paragraph(chk.doc)
    assert source, f"{chk.id} ({chk.topic}.py): the docstring has no `Source:` paragraph after the why"
    assert names_something_concrete(source), (
        f"{chk.id}: the Source paragraph names no path, function or document:\n{source}"
    )


@pytest.mark.parametrize("chk", CHECKS, ids=[c.id for c in CHECKS])
def test_why_is_not_the_source(chk):
    assert not chk.why.startswith("Source"), f"{chk.id}: the first paragraph (the why) is the Source paragraph"


@pytest.mark.parametrize(
    ("doc", "ok"),
    [
        ("Why.\n\nFails: x.\n\nSource: ai-dynamo 1.4.0 dynamo/vllm/args.py.", True),
        ("Why.\n\nSource: Kubernetes Job `activeDeadlineSeconds`.", True),
        ("Why.\n\nSource: This catalogue's convention (not a Dynamo rule).", True),
        ("Why.\n\nSource (ai-dynamo 1.4.0): dynamo/router/README.md.", True),
        ("Why.\n\nSource: common sense.", False),  # names nothing a reader can open
        ("Why.\n\nFails: x. Source: dynamo/vllm/args.py.", False),  # not a paragraph of its own
        ("Source: dynamo/vllm/args.py.", False),  # the why is missing: the source is the first paragraph
    ],
)
def test_the_rule_itself(doc, ok):
    source = source_paragraph(doc)
    assert (source is not None and names_something_concrete(source)) is ok


def test_a_check_is_found_from_its_id():
    """`recipe-harness checks ID` names the file; the function there is named as the id is."""
    repo = Path(__file__).resolve().parent.parent
    for chk in all_checks():
        assert (repo / chk.source).is_file(), chk.source
        assert chk.fn.__name__ == chk.id.replace("-", "_"), f"{chk.source}: {chk.fn.__name__} is check {chk.id}"
