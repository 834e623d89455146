"""Machine formats of a static run besides JSON: SARIF 2.1.0 for code scanning, JUnit XML for CI test
reports, and the per-check counts of `--statistics`. Each carries the same fields as the text line."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness import __version__
from harness.checks import Check
from harness.recipe.findings import Finding, Severity, sorted_findings

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/ai-dynamo/dynamo"  # the project whose recipes the rules are about


def _uri(file: str) -> str:
    """Findings name files relative to the working directory (SARIF: relative to %SRCROOT%, the checkout
    code scanning uploads from); a file outside it keeps its absolute file: URI."""
    path = Path(file)
    return path.absolute().as_uri() if path.is_absolute() else path.as_posix()


def _level(severity: Severity) -> str:
    return "error" if severity is Severity.ERROR else "warning"


def to_sarif(findings: Iterable[Finding], checks: Sequence[Check]) -> str:
    """One SARIF run: every check that ran as a rule (id, why, level), every finding as a result at its
    file, line and column, the hint as the fix text."""
    rules = list(checks)
    index = {c.id: i for i, c in enumerate(rules)}
    results = []
    for f in sorted_findings(findings):
        location: dict = {"artifactLocation": {"uri": _uri(f.file)}}
        if f.file and not Path(f.file).is_absolute():
            location["artifactLocation"]["uriBaseId"] = "%SRCROOT%"
        if f.line and f.line >= 1:
            location["region"] = {"startLine": f.line, **({"startColumn": f.column} if f.column >= 1 else {})}
        result: dict = {
            "ruleId": f.check_id,
            "level": _level(f.severity),
            "message": {"text": f.message + (f"\nhint: {f.hint}" if f.hint else "")},
            "locations": [{"physicalLocation": location}],
        }
        if f.check_id in index:
            result["ruleIndex"] = index[f.check_id]
        if f.recipe:
            result["properties"] = {"recipe": f.recipe}
        results.append(result)
    driver = {
        "name": "recipe-harness",
        "version": __version__,
        "informationUri": INFORMATION_URI,
        "rules": [
            {
                "id": c.id,
                "shortDescription": {"text": c.why},
                "fullDescription": {"text": c.doc},
                "help": {"text": f"recipe-harness checks {c.id}"},
                "defaultConfiguration": {"level": _level(c.severity)},
                "properties": {"topic": c.topic, "convention": c.convention},
            }
            for c in rules
        ],
    }
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{"tool": {"driver": driver}, "results": results, "columnKind": "unicodeCodePoints"}],
    }
    return json.dumps(sarif, indent=2)


def to_junit(findings: Iterable[Finding], ran: Iterable[tuple[Check, str]]) -> str:
    """A JUnit XML suite with one test case per (check, recipe) that ran, named as pytest names it
    (`static::<recipe-id>::<check-id>`): errors fail it, warnings are its system-out."""
    by_case: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        by_case.setdefault((f.check_id, f.recipe), []).append(f)
    suite = ET.Element("testsuite", name="recipe-harness static")
    tests = failures = 0
    for chk, subject in ran:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=f"static.{subject}", name=f"static::{subject}::{chk.id}")
        found = sorted_findings(by_case.get((chk.id, subject), []))
        errors = [f for f in found if f.severity is Severity.ERROR]
        warnings = [f for f in found if f.severity is Severity.WARNING]
        if errors:
            failures += 1
            failure = ET.SubElement(case, "failure", message=errors[0].format().splitlines()[0], type=chk.id)
            failure.text = "\n".join(f.format() for f in errors) + f"\n\nwhy [{chk.id}]: {chk.why}"
        if warnings:
            ET.SubElement(case, "system-out").text = "\n".join(f.format() for f in warnings)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def statistics(findings: Iterable[Finding]) -> list[str]:
    """`--statistics`, as ruff prints it: count, check id and severity per check, most frequent first."""
    counts = Counter((f.check_id, f.severity.value) for f in findings)
    if not counts:
        return []
    width = len(str(max(counts.values())))
    id_width = max(len(check_id) for check_id, _ in counts)
    return [
        f"{n:>{width}}  {check_id:<{id_width}}  {sev}"
        for (check_id, sev), n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    ]
