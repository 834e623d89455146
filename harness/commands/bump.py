"""`recipe-harness bump --to R`: move the selected recipes to Dynamo release R and prove what breaks.

On a copy of the recipes tree it adds or refreshes R's `versions.yaml` row (engines from the
ai-dynamo R wheel METADATA, CUDA and images from the release's artifacts table), rewrites the
Dynamo image tags and `recipe.yaml` versions, regenerates the docs, then runs the static tier and
the conformance tier on the tree before and after: each recipe's command lines are parsed by its
old release's parsers and by R's. It prints per recipe what changed and what now fails (flags the
old parser accepted and R's rejects are listed as removed or renamed). Without --dry-run the
changed files are written back; a second run finds nothing to change.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.commands import add_selection_args, selection_from


def known_releases() -> list[str]:
    """The releases `bump --to` can move to: the rows of the artifacts table."""
    import yaml

    from harness.recipe.bump import ARTIFACTS_FILE

    try:
        data = yaml.safe_load(ARTIFACTS_FILE.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    return sorted(str(r) for r in (data.get("releases") or {}))


def bump_epilog(releases: list[str]) -> str:
    newest = releases[-1] if releases else "1.6.1"
    return "\n".join(
        [
            f"releases it can bump to: {', '.join(releases) or 'none'} (rows of harness/recipe/data/artifacts.yaml)",
            "to add one: add its row to harness/recipe/data/artifacts.yaml from the release's published",
            '  "Release Artifacts" page (imageTag, images, cuda per backend, source); the engine versions',
            "  come from the ai-dynamo wheel's METADATA at bump time (the package index must have it).",
            "",
            "examples:",
            f"  recipe-harness bump --to {newest} --dry-run             what changes and what breaks, every recipe",
            f"  recipe-harness bump --to {newest} recipes/qwen3-32b     one model's recipes, written back",
        ]
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    releases = known_releases()
    p = sub.add_parser(
        "bump",
        help="move recipes to another Dynamo release: versions row, image tags, docs; then show what breaks",
        description="Move the selected recipes to Dynamo RELEASE on a copy of the tree (versions.yaml row, "
        "image tags, recipe.yaml versions, docs), run the static and conformance tiers before and after, "
        "and print what changed and what breaks. Without --dry-run the changed files are written back.",
        epilog=bump_epilog(releases),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="RELEASE",
        help=f"the Dynamo release: {', '.join(releases) or 'a row of harness/recipe/data/artifacts.yaml'}",
    )
    add_selection_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the diff and the breaks, write nothing")
    p.add_argument("--no-conformance", action="store_true", help="skip the conformance tier (static only)")
    p.set_defaults(func=run)


@dataclass
class RecipeBump:
    """What the bump did to one recipe and what the tiers said before and after."""

    rid: str
    old: str
    edits: list = field(default_factory=list)  # bump.Edit
    review: list[str] = field(default_factory=list)  # lines still naming the old release
    new_static: list[str] = field(default_factory=list)
    fixed_static: list[str] = field(default_factory=list)
    conformance: list[str] = field(default_factory=list)
    broken: bool = False


def release_facts(release: str):
    """Engines from the wheel METADATA, CUDA/images from the artifacts table; raises ValueError when missing."""
    from harness.recipe.bump import BACKENDS, ReleaseFacts, artifacts_row
    from harness.run.conformance import envs

    row = artifacts_row(release)
    if row is None:
        raise ValueError(
            f"Dynamo {release} is not in harness/recipe/data/artifacts.yaml: add its published "
            f"release-artifacts row (images, CUDA per backend, source) first"
        )
    metadata = envs.wheel_metadata(release)
    engines = {b: v for b in BACKENDS if (v := envs.engine_pin(metadata, b))}
    notes = []
    for b, printed in (row.get("engines") or {}).items():
        if engines.get(b) and str(printed) != engines[b]:
            notes.append(f"the artifacts table prints {b} {printed} but the wheel pins {engines[b]}: the wheel wins")
    if row.get("note"):
        notes.append(" ".join(str(row["note"]).split()))
    return ReleaseFacts(
        release,
        engines,
        {str(k): str(v) for k, v in (row.get("cuda") or {}).items()},
        str(row.get("imageTag") or release),
        [f"engines: ai-dynamo=={release} wheel METADATA (Requires-Dist extras)", f"CUDA, images: {row.get('source')}"],
        notes,
    )


def apply_bump(work: Path, chosen: list, facts) -> tuple[list[RecipeBump], bool]:
    """Edit the copy under `work` (same layout as the recipes tree); returns per-recipe results and
    whether versions.yaml changed."""
    from harness.recipe import bump
    from harness.recipe.yamlsrc import dig, loc_of

    versions = work / "versions.yaml"
    text, row_changed = bump.upsert_release_row(versions.read_text(), facts)
    if row_changed:
        versions.write_text(text)
    out = []
    for recipe in chosen:
        old = recipe.release
        rb = RecipeBump(recipe.id, old)
        rdir = work / recipe.id
        files = sorted(p for p in rdir.rglob("*.yaml") if p.is_file())
        for path in files:
            original = path.read_text()
            new_text = original
            if old and old != facts.release:
                new_text, edits = bump.retag(new_text, old, facts.image_tag, path)
                rb.edits += edits
            if path.name == "recipe.yaml":
                new_text = _bump_metadata(recipe, new_text, facts, rb, path, dig, loc_of)
            if new_text != original:
                path.write_text(new_text)
            if old and old != facts.release:
                rb.review += [f"{path.relative_to(work)}:{n}" for n in bump.mentions(new_text, old)]
        readme = work / recipe.id.split("/")[0] / "README.md"
        if old and old != facts.release and readme.is_file():
            rb.review += [f"{readme.relative_to(work)}:{n}" for n in bump.mentions(readme.read_text(), old)]
        out.append(rb)
    return out, row_changed


def _bump_metadata(recipe, text: str, facts, rb: RecipeBump, path: Path, dig, loc_of) -> str:
    from harness.recipe import bump

    meta = recipe.metadata
    framework = str(meta.get("framework") or recipe.framework or "")
    for key, new in (("dynamo", facts.release), ("backend", facts.engines.get(framework, ""))):
        value = dig(meta, "versions", key)
        if value is None or not new or str(value) == new:
            continue
        loc = loc_of(meta, "versions", key)
        text = bump.replace_scalar(text, loc.line, loc.column, str(value), new)
        rb.edits.append(bump.Edit(path, loc.line, f"versions.{key} {value} -> {new}"))
    return text


def _static_keys(root: Path, selectors: list[str], releases: tuple[str, str]) -> dict[str, dict[str, str]]:
    """recipe id -> {normalised finding: printable finding} (positions and release strings left out)."""
    from harness.run.static import context_for, make_selection, run_static

    selection = make_selection(root, selectors)
    report = run_static(selection, context_for(selection))
    by_recipe: dict[str, dict[str, str]] = {}
    for f in report.findings:
        if f.severity.value != "error":
            continue
        rel = Path(f.file).relative_to(root) if Path(f.file).is_absolute() else Path(f.file)
        rid = next((r.id for r in selection.chosen if str(rel).startswith(r.id + "/")), "(tree)")
        msg = f.message
        for rel_name in releases:
            msg = msg.replace(rel_name, "<release>")
        key = f"{f.check_id}|{rel}|{re.sub(r'[0-9]+', 'N', msg)}"
        by_recipe.setdefault(rid, {})[key] = f"{rel}:{f.line}:{f.column}: [{f.check_id}] {f.message}"
    return by_recipe


def _conformance(root: Path, selectors: list[str]) -> dict[str, list]:
    """recipe id -> [JobOutcome] parsed with the recipe's own release's parsers."""
    from harness.run.conformance.client import check_recipes
    from harness.run.static import make_selection

    selection = make_selection(root, selectors)
    out: dict[str, list] = {}
    for o in check_recipes(selection.chosen):
        out.setdefault(o.job.recipe.id, []).append(o)
    return out


def _job_state(o) -> str:
    if o.skipped:
        return "skipped"
    return "ok" if not o.findings and o.result.kind != "driver" else "fails"


def _compare_conformance(rb: RecipeBump, before: list, after: list, work: Path, root: Path, facts) -> None:
    old_by = {o.job.service: o for o in before}
    for o in after:
        prev = old_by.get(o.job.service)
        was, now = (_job_state(prev) if prev else "absent"), _job_state(o)
        if now == "skipped":
            rb.conformance.append(f"{o.job.service}: not parsed with {facts.release}: {o.skipped}")
            continue
        if now == "ok":
            if was == "fails":
                rb.conformance.append(f"{o.job.service}: fixed (failed with {rb.old}, parses with {facts.release})")
            continue
        rb.broken = True
        label = "still fails" if was == "fails" else f"now fails (was {was} with {rb.old})"
        rb.conformance.append(f"{o.job.service}: {label} with {facts.release} [{o.result.env}]")
        for f in o.findings:
            rb.conformance.append("    " + f.format().replace(str(work), str(root)).splitlines()[0])
        if o.result.kind == "driver":
            rb.conformance.append(f"    {o.result.error}")
        if prev is not None and _job_state(prev) == "ok":
            for flag in o.result.unrecognized:
                rb.conformance.append(
                    f"    flag {flag}: accepted by Dynamo {rb.old} ({prev.result.env}), unknown to "
                    f"{facts.release}: removed or renamed"
                )
    for note in sorted({n for o in after for n in o.job.notes}):
        rb.conformance.append(f"note: {note}")  # e.g. what the parse could not check for this release
    parsed_ok = sorted({o.result.env for o in after if _job_state(o) == "ok"})
    if after and all(_job_state(o) == "ok" for o in after):
        rb.conformance.append(f"every command line parses with {facts.release} ({'; '.join(parsed_ok)})")
    for o in after:
        prev = old_by.get(o.job.service)
        if prev is None or _job_state(o) != "ok":
            continue
        new_warn = [w for w in o.result.warnings if "deprecat" in w.lower() and w not in prev.result.warnings]
        for w in new_warn[:3]:
            rb.conformance.append(f"{o.job.service}: deprecation warning new in {facts.release}: {w[:200]}")


def _diff(root: Path, work: Path) -> list[tuple[Path, str, str]]:
    """(relative path, old text, new text) for every file the bump changed."""
    out = []
    for path in sorted(work.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(work)
        orig = root / rel
        new = path.read_text(errors="replace")
        old = orig.read_text(errors="replace") if orig.is_file() else ""
        if new != old:
            out.append((rel, old, new))
    return out


def run(args: argparse.Namespace) -> int:
    from harness.analysis.docs import write as write_docs
    from harness.commands.convert import unified_diff, write_atomic
    from harness.recipe.findings import display_path
    from harness.run.conformance import envs
    from harness.run.static import make_selection

    selection = selection_from(args)
    if selection is None:
        return 2
    try:
        facts = release_facts(args.to)
    except (ValueError, envs.EnvBuildError) as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
    root = selection.root
    print(
        f"bump to Dynamo {facts.release}: vllm {facts.engines.get('vllm', '-')}, "
        f"sglang {facts.engines.get('sglang', '-')}, "
        f"trtllm {facts.engines.get('trtllm', '-')}; CUDA {facts.cuda}; image tag :{facts.image_tag}"
    )
    for s in facts.sources:
        print(f"  source: {s}")
    for n in facts.notes:
        print(f"  note: {n}")
    from harness.recipe.schemas import dynamo_releases

    have = dynamo_releases()
    if facts.release not in have:
        print(
            f"  note: no DynamoGraphDeployment schema generated for {facts.release} (schemas/dynamo/ has "
            f"{', '.join(have) or 'none'}): the static tier validates the bumped manifests against "
            f"{have[-1] if have else 'nothing'}; generate it with `recipe-harness schemas import-crd CRD --release "
            f"{facts.release} ...` from the release's CRD"
        )
    selectors = list(args.recipe)
    with tempfile.TemporaryDirectory(prefix="recipe-bump-") as tmp:
        work = Path(tmp) / root.name
        shutil.copytree(root, work, symlinks=True)
        chosen = make_selection(work, selectors).chosen
        results, row_changed = apply_bump(work, chosen, facts)
        write_docs(make_selection(work).tree)
        changes = _diff(root, work)
        old_releases = sorted({rb.old for rb in results if rb.old})
        release_pair = (facts.release, *old_releases)
        static_before = _static_keys(root, selectors, release_pair)
        static_after = _static_keys(work, selectors, release_pair)
        conf_before = conf_after = {}
        if not args.no_conformance:
            conf_before = _conformance(root, selectors)
            conf_after = _conformance(work, selectors)
        for rb in results:
            before, after = static_before.get(rb.rid, {}), static_after.get(rb.rid, {})
            rb.new_static = [after[k].replace(str(work), str(root)) for k in after if k not in before]
            rb.fixed_static = [before[k] for k in before if k not in after]
            rb.broken |= bool(rb.new_static)
            if not args.no_conformance:
                _compare_conformance(rb, conf_before.get(rb.rid, []), conf_after.get(rb.rid, []), work, root, facts)
        tree_new = [v for k, v in static_after.get("(tree)", {}).items() if k not in static_before.get("(tree)", {})]

        print(f"\nversions.yaml: row {facts.release} {'added or refreshed' if row_changed else 'up to date'}")
        for rb in results:
            _print_recipe(rb, facts, work)
        for line in tree_new:
            print(f"tree: NEW {line.replace(str(work), str(root))}")
        if args.dry_run:
            print(f"\n--- diff ({len(changes)} file(s); --dry-run: nothing written) ---")
            for rel, old, new in changes:
                sys.stdout.writelines(unified_diff(old, new, str(rel)))
        else:
            for rel, _old, new in changes:
                write_atomic(root / rel, new)
            print(
                f"\nwrote {len(changes)} file(s)"
                + (
                    f": {', '.join(str(display_path(root / r)) for r, _, _ in changes)}"
                    if changes
                    else " (nothing to change: already on " + facts.release + ")"
                )
            )
        broken = [rb for rb in results if rb.broken]
        print(
            f"\nbump {facts.release}: {len(results)} recipe(s), {sum(1 for rb in results if rb.edits)} changed, "
            f"{len(broken)} fail after the bump"
            + (f" ({', '.join(rb.rid for rb in broken)})" if broken else "")
            + (f"; {len(tree_new)} new tree finding(s)" if tree_new else "")
        )
    return 1 if broken or tree_new else 0


def _print_recipe(rb: RecipeBump, facts, work: Path) -> None:
    head = f"{rb.rid}: {rb.old or '?'} -> {facts.release}"
    print(f"\n{head}" + ("" if rb.edits else " (no edits: already on it)"))
    for e in rb.edits:
        print(f"  changed {e.file.relative_to(work)}:{e.line}: {e.what}")
    if rb.review:
        print(f"  review (still names {rb.old}): {', '.join(rb.review)}")
    for line in rb.new_static:
        print(f"  static NEW: {line}")
    for line in rb.fixed_static:
        print(f"  static fixed: {line}")
    if not rb.new_static:
        print("  static: no new errors")
    for line in rb.conformance:
        print(f"  conformance: {line}")
