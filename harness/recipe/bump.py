"""Moves recipe files to another Dynamo release as small text edits: the `versions.yaml` row, the
Dynamo image tags, and `recipe.yaml` `versions`. Pure functions over text; `recipe-harness bump`
(harness/commands/bump.py) gathers the release's facts, applies them to a copy and runs the tiers.

Every edit keeps the rest of the file byte for byte (comments, quoting, order), and applying the
same release twice changes nothing.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

ARTIFACTS_FILE = Path(__file__).with_name("data") / "artifacts.yaml"
DYNAMO_REGISTRY = "nvcr.io/nvidia/ai-dynamo/"
BACKENDS = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class ReleaseFacts:
    """What a release ships, with where each fact came from."""

    release: str
    engines: dict[str, str]  # vllm | sglang | trtllm -> version (the wheel METADATA extras)
    cuda: dict[str, str]  # backend -> CUDA version of its runtime image (the artifacts table)
    image_tag: str  # the tag of the release's runtime images
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Edit:
    """One change to one line of a file."""

    file: Path
    line: int
    what: str


def artifacts_row(release: str, path: Path = ARTIFACTS_FILE) -> dict[str, Any] | None:
    """The release's row of harness/recipe/data/artifacts.yaml (the published artifacts table), or None."""
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    row = ((data or {}).get("releases") or {}).get(release)
    return row if isinstance(row, dict) else None


def _dynamo_image_re(old: str) -> re.Pattern[str]:
    # the old release, then nothing that would make it a longer version (1.4.0 must not match 1.4.01)
    return re.compile(rf"({re.escape(DYNAMO_REGISTRY)}[A-Za-z0-9._/-]+):{re.escape(old)}(?![0-9A-Za-z.])")


def retag(text: str, old: str, new: str, path: Path) -> tuple[str, list[Edit]]:
    """Every `nvcr.io/nvidia/ai-dynamo/<image>:<old>` becomes `:<new>` (a `-suffix` stays)."""
    if old == new:
        return text, []
    pat = _dynamo_image_re(old)
    edits: list[Edit] = []
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue
        new_line, n = pat.subn(lambda m: f"{m.group(1)}:{new}", line)
        if n:
            for m in pat.finditer(line):
                edits.append(Edit(path, i + 1, f"image {m.group(1).removeprefix(DYNAMO_REGISTRY)}:{old} -> :{new}"))
            lines[i] = new_line
    return "".join(lines), edits


def replace_scalar(text: str, line: int, column: int, old: str, new: str) -> str:
    """Replace the scalar `old` that starts at line:column (1-based), keeping its quotes."""
    lines = text.splitlines(keepends=True)
    row = lines[line - 1]
    head, tail = row[: column - 1], row[column - 1 :]
    m = re.match(rf"(['\"]?){re.escape(old)}(['\"]?)", tail)
    if m is None:
        raise ValueError(f"line {line}: expected {old!r} at column {column}, found {tail.strip()!r}")
    lines[line - 1] = head + m.group(1) + new + m.group(2) + tail[m.end() :]
    return "".join(lines)


def mentions(text: str, old: str) -> list[int]:
    """Lines that still name the old release (comments, prose): for a person to review."""
    pat = re.compile(rf"(?<![0-9.]){re.escape(old)}(?![0-9A-Za-z])")
    return [i + 1 for i, line in enumerate(text.splitlines()) if pat.search(line)]


def _ruamel() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _flow(items: dict[str, str]) -> CommentedMap:
    m = CommentedMap((k, DoubleQuotedScalarString(v)) for k, v in items.items())
    m.fa.set_flow_style()
    return m


def upsert_release_row(text: str, facts: ReleaseFacts) -> tuple[str, bool]:
    """Add the release's row at the top of `releases` (newest first) or refresh it in place.

    Returns (text, changed); an unchanged row leaves the text as it was."""
    y = _ruamel()
    data = y.load(text)
    releases = data.get("releases")
    if not isinstance(releases, CommentedMap):
        raise ValueError("versions.yaml has no `releases:` mapping")
    row = CommentedMap((b, DoubleQuotedScalarString(facts.engines[b])) for b in BACKENDS if facts.engines.get(b))
    row["cuda"] = _flow({b: facts.cuda[b] for b in BACKENDS if facts.cuda.get(b)})
    row.fa.set_flow_style()
    current = releases.get(facts.release)
    if current is not None and _plain(current) == _plain(row):
        return text, False
    if current is not None:
        releases[facts.release] = row
    else:
        releases.insert(0, DoubleQuotedScalarString(facts.release), row)
        why = (
            f"{facts.release}: engines from the ai-dynamo {facts.release} wheel METADATA; "
            "CUDA from the artifacts table (harness/recipe/data/artifacts.yaml)"
        )
        releases.yaml_set_comment_before_after_key(facts.release, before=why, indent=2)
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue(), True


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    return str(node)
