"""Findings: what a check reports, where it points, and how it is printed."""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Loc:
    """A place in a source file; line and column are 1-based."""

    file: Path
    line: int = 1
    column: int = 1


@dataclass(frozen=True)
class Problem:
    """What a check yields: a finding without its check id (the runner stamps it)."""

    loc: Loc
    message: str
    hint: str = ""
    severity: Severity | None = None


def problem(loc: Loc, message: str, hint: str = "", severity: Severity | None = None) -> Problem:
    return Problem(loc, message, hint, severity)


@dataclass(frozen=True)
class Finding:
    check_id: str
    severity: Severity
    file: str
    line: int
    column: int
    message: str
    hint: str = ""
    recipe: str = ""

    def format(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: [{self.check_id}] {self.message}"
        if self.severity is Severity.WARNING:
            text = f"{self.file}:{self.line}:{self.column}: [{self.check_id}] warning: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def github_annotation(self) -> str:
        level = "error" if self.severity is Severity.ERROR else "warning"
        msg = _gh_escape(f"[{self.check_id}] {self.message}" + (f" Hint: {self.hint}" if self.hint else ""))
        return (
            f"::{level} file={_gh_escape_prop(self.file)},line={self.line},col={self.column},"
            f"title={self.check_id}::{msg}"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_escape_prop(text: str) -> str:
    return _gh_escape(text).replace(":", "%3A").replace(",", "%2C")


def display_path(path: Path, base: Path | None = None) -> str:
    """Paths are printed relative to the working directory when they are below it."""
    base = base or Path.cwd()
    try:
        return os.path.relpath(path, base) if Path(path).is_absolute() and _is_below(path, base) else str(path)
    except ValueError:
        return str(path)


def _is_below(path: Path, base: Path) -> bool:
    try:
        Path(path).resolve().relative_to(base.resolve())
        return True
    except ValueError:
        return False


@dataclass
class Report:
    """All findings of one static run, for the JSON and annotation reporters."""

    findings: list[Finding] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)

    def to_json(self) -> str:
        return json.dumps(
            {
                "recipes": self.recipes,
                "summary": {"errors": self.errors, "warnings": self.warnings},
                "findings": [f.to_dict() for f in sorted_findings(self.findings)],
            },
            indent=2,
        )


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.file, f.line, f.column, f.check_id))
