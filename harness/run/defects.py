"""Defect fixtures: a shipped recipe with one thing made wrong, and the finding it must produce.
The tests run every fixture (tests/test_defects.py); `recipe-harness checks ID` shows a check's
fixture as its failing example.

Each `tests/fixtures/defects/<what-is-wrong>.yaml` names edits to a copy of the shipped
catalogue (`recipes/`) and the findings expected, with check id, file and line:

    why: upstream shipped a placeholder tag
    edits:
      - file: qwen3-32b/vllm/agg-round-robin/deploy.yaml
        replace: "vllm-runtime:1.4.0"      # first occurrence (count: N for more, 0 = all)
        with: "vllm-runtime:my-tag"
    expect:
      - check: image-tag-pinned
        file: qwen3-32b/vllm/agg-round-robin/deploy.yaml
        line: edit                          # the line of the first edit in that file (default)
        message: my-tag                     # optional substring

`base:` names the catalogue the edits apply to: by default the shipped one (`recipes/`, v1beta1 since
Dynamo 1.6.1); `base: 1.4.0-v1alpha1` uses the frozen pre-migration corpus under
`tests/fixtures/catalogues/1.4.0-v1alpha1/` (the v1alpha1 `services` form, still supported by the checks).

A fixture whose check runs an external program names it: `requires: [kubeconform]` (skipped
when it is not on PATH). Every check id has at least one fixture (tests/test_defects.py), and
`recipe-harness checks ID` shows it as the check's failing example.

Other edits: `write: TEXT`, `write_hex: HEX` (raw bytes), `append: TEXT`, `append_bytes: N`, `delete: true`,
`symlink: TARGET` (relative to the link), `mkdir: true`, `remove_line_containing: TEXT`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.recipe import kustomize

REPO = Path(__file__).resolve().parents[2]  # a checkout: the fixtures are not installed with the package
CATALOGUE = REPO / "recipes"
DEFECTS = REPO / "tests" / "fixtures" / "defects"
CATALOGUES = REPO / "tests" / "fixtures" / "catalogues"  # frozen catalogues a fixture can name as its `base`


@dataclass
class Expected:
    check: str
    file: str
    line: int | None
    message: str = ""


@dataclass
class Defect:
    name: str
    why: str
    edits: list[dict]
    expect: list[Expected] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)  # selectors to run (default: the edited models)
    requires: list[str] = field(default_factory=list)  # programs the check runs (skipped when not on PATH)
    base: str = ""  # "" = the shipped catalogue; else a folder under tests/fixtures/catalogues/
    broken: str = ""  # the fixture itself could not be read: its test fails with this

    @property
    def catalogue(self) -> Path:
        """The catalogue the edits apply to."""
        return CATALOGUES / self.base if self.base else CATALOGUE


def load_defects() -> list[Defect]:
    out = []
    for path in sorted(DEFECTS.glob("*.yaml")):
        try:
            spec = yaml.safe_load(path.read_text())
            expect = [
                Expected(e["check"], e["file"], e.get("line", "edit"), e.get("message", "")) for e in spec["expect"]
            ]
            base = str(spec.get("base") or "")
            if base and not (CATALOGUES / base).is_dir():
                raise KeyError(f"base {base!r}: no tests/fixtures/catalogues/{base}/")
            out.append(
                Defect(
                    path.stem,
                    spec.get("why", ""),
                    spec["edits"],
                    expect,
                    spec.get("recipes", []),
                    spec.get("requires", []),
                    base,
                )
            )
        except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:  # one bad fixture fails one test
            out.append(Defect(path.stem, "", [], broken=f"{path.name}: {type(exc).__name__}: {exc}"))
    return out


def materialise(defect: Defect, tmp: Path) -> tuple[Path, list[Expected]]:
    """Copy the fixture's base catalogue to tmp, apply the edits, resolve `line: edit`; returns (root, expectations)."""
    root = tmp / "recipes"
    shutil.copytree(defect.catalogue, root, symlinks=True)
    edit_lines: dict[str, int] = {}
    for edit in defect.edits:
        rel = edit["file"]
        path = root / rel
        line = apply_edit(edit, path)
        if line is not None:
            edit_lines.setdefault(rel, line)
    resolved = []
    for e in defect.expect:
        line = edit_lines.get(e.file, 1) if e.line == "edit" else e.line
        resolved.append(Expected(e.check, e.file, line, e.message))
    return root, resolved


def apply_edit(edit: dict, path: Path) -> int | None:
    """Apply one edit of a fixture to `path`; returns the line it changed (None for a deletion or a mkdir)."""
    if "replace" in edit:
        text = path.read_text()
        old, new = str(edit["replace"]), str(edit["with"])
        assert old in text, f"{path}: {old!r} not found (the catalogue changed? update the defect fixture)"
        count = edit.get("count", 1)
        line = text[: text.index(old)].count("\n") + 1
        path.write_text(text.replace(old, new) if count == 0 else text.replace(old, new, count))
        return line
    if "remove_line_containing" in edit:
        lines = path.read_text().splitlines(keepends=True)
        idx = next(i for i, line in enumerate(lines) if edit["remove_line_containing"] in line)
        del lines[idx]
        path.write_text("".join(lines))
        return idx + 1
    if "write" in edit:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(edit["write"])
        return 1
    if "write_hex" in edit:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes.fromhex(edit["write_hex"]))
        return 1
    if "append" in edit:
        before = path.read_text()
        path.write_text(before + edit["append"])
        return before.count("\n") + 1
    if "append_bytes" in edit:  # pad with comment lines up to N more bytes
        with path.open("a") as fh:
            fh.write(("#" * 99 + "\n") * (int(edit["append_bytes"]) // 100 + 1))
        return 1
    if edit.get("delete"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        return None
    if "symlink" in edit:
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(edit["symlink"])
        return 1
    if edit.get("mkdir"):
        path.mkdir(parents=True, exist_ok=True)
        return None
    raise ValueError(f"unknown edit {edit}")


def selectors_for(defect: Defect) -> list[str]:
    """The recipes to check: given, or every recipe of each edited model."""
    if defect.recipes:
        return defect.recipes
    models = []
    for edit in defect.edits:
        model = edit["file"].split("/")[0]
        if model not in models and (defect.catalogue / model).is_dir():
            models.append(model)
    return models


def fixtures_for(check_id: str) -> list[Defect]:
    """The fixtures that expect a finding of this check (its failing examples)."""
    return [d for d in load_defects() if any(e.check == check_id for e in d.expect)]


def missing_programs(defect: Defect) -> list[str]:
    """The programs a fixture needs that cannot be found (kustomize: any the harness would run, see
    harness.recipe.kustomize.locate)."""
    return [p for p in defect.requires if (kustomize.locate() is None if p == "kustomize" else shutil.which(p) is None)]


def describe_edit(edit: dict) -> str:
    """One edit of a fixture as a person reads it."""
    where = edit["file"]
    if "replace" in edit:
        return f"{where}: {edit['replace']!r} -> {edit['with']!r}"
    if "remove_line_containing" in edit:
        return f"{where}: remove the line containing {edit['remove_line_containing']!r}"
    if "write" in edit:
        first = str(edit["write"]).splitlines()[0] if str(edit["write"]).strip() else ""
        more = " ..." if str(edit["write"]).count("\n") > 1 else ""
        return f"{where}: write {first!r}{more}"
    if edit.get("delete"):
        return f"{where}: delete"
    rest = {k: v for k, v in edit.items() if k != "file"}
    return f"{where}: " + ", ".join(f"{k} {str(v)[:60]!r}" for k, v in rest.items())
