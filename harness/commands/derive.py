"""`recipe-harness derive RECIPE --set KEY=VALUE ...`: a variant of a shipped recipe with every dependent
value updated, proven by the static, conformance and API-server tiers before it is written.

The plan (what changes and why, and the refusals of a variant that cannot run) is
harness/analysis/variant.py; the edits harness/recipe/derive.py; the proof harness/run/prove.py. The
variant is built in a copy of the destination tree (the catalogue, or --out DIR), its docs regenerated
there, proven there, and only then copied back.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.commands import examples

_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def setting(text: str) -> tuple[str, Any]:
    """argparse type of --set: KEY=VALUE, typed and range-checked by the key (harness/recipe/derive.py KEYS)."""
    from harness.recipe.derive import UsageError, parse_sets

    try:
        ((key, value),) = parse_sets([text]).items()
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--set {text!r}: ")) from None
    return key, value


def mode_name(text: str) -> str:
    if not _KEBAB.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a mode directory is kebab-case (a-z, 0-9, single dashes)")
    return text


def _keys_help() -> str:
    from harness.recipe.derive import KEYS

    rows = []
    for k in KEYS.values():
        choices = f" ({', '.join(k.choices())})" if k.choices else ""
        rows.append(f"  {k.name:<14} {k.help}{choices}")
    return "keys:\n" + "\n".join(rows)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "derive",
        help="a variant of a recipe (TP, replicas, GPU, router, ...) with its dependents, proven before it is written",
        description="Derive a variant of RECIPE: set the customization points, update every value that depends on "
        "them (GPU requests, node counts, perf concurrency, KV block sizes, KV events, metadata, docs), refuse "
        "a variant that cannot run with the engine's or the sizing's reason, prove it with the static, "
        "conformance and API-server tiers, and write it only when they pass (or with --force, carrying the "
        "findings). Deriving twice gives the same files.",
        **examples(
            (
                "recipe-harness derive qwen3-32b/vllm/agg-round-robin --set tp=4 --set replicas=4 --set gpu=B200",
                "a B200 variant",
            ),
            ("recipe-harness derive qwen3-32b/vllm/agg-round-robin --set router=kv --dry-run", "what would change"),
            (
                "recipe-harness derive llama-3-70b/vllm/agg --set gpu=H100 --set storage-class=efs-sc --out my-recipes",
                "into your own tree",
            ),
            note=_keys_help(),
        ),
    )
    p.add_argument("recipe", metavar="RECIPE", help="the recipe id to derive from (model/framework/mode)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        type=setting,
        default=[],
        metavar="KEY=VALUE",
        help="a customization point (repeatable; the keys are listed below)",
    )
    p.add_argument(
        "--name", type=mode_name, metavar="MODE", help="the variant's mode directory (default: from the settings)"
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write into this recipes tree (created as a copy of the catalogue when missing) instead of the catalogue",
    )
    p.add_argument("--recipes-dir", type=Path, metavar="PATH", help="the tree RECIPE comes from (default: ./recipes)")
    p.add_argument("--dry-run", action="store_true", help="print the changes, the proof and the diff; write nothing")
    p.add_argument("--force", action="store_true", help="write a variant that fails a tier; it carries the findings")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a tier that cannot run (env or binaries missing) fails the variant (also RECIPE_HARNESS_STRICT)",
    )
    p.set_defaults(func=run)


def estimator():
    """The performance model that fills a variant's `targets` (`kind: estimate` with its source): AIConfigurator
    (harness/run/estimate) when its env is set up (`recipe-harness estimate --setup`), else None: then the
    variant has no targets until measured. Where its databases do not cover the variant, the targets' source
    says why."""
    from harness.run.estimate.env import find_env
    from harness.run.estimate.predict import estimate_for_plan

    return estimate_for_plan if find_env() is not None else None


def _usage(message: str) -> int:
    print(f"recipe-harness derive: {message}", file=sys.stderr)
    return 2


def _model_dirs(recipes) -> dict[str, tuple[str, str]]:
    from harness.recipe.yamlsrc import dig

    out: dict[str, tuple[str, str]] = {}
    for r in recipes:
        mid = dig(r.metadata, "model", "id")
        if isinstance(mid, str) and mid not in out:
            out[mid] = (r.model, str(dig(r.metadata, "model", "revision") or ""))
    return out


def build_variant(work: Path, source: Path, plan, rel_dir: str) -> list:
    """Write the variant into the tree copy `work` from the source recipe directory; returns the changes."""
    from harness.recipe import derive
    from harness.recipe.derive import DeriveError

    spec = plan.spec
    dest = work / rel_dir
    if dest.resolve() == source.resolve():
        raise DeriveError(f"{rel_dir}: the variant would overwrite its source; choose another --name")
    if dest.exists():
        shutil.rmtree(dest)
    changes: list[derive.Change] = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        name = f"{rel_dir}/{rel.as_posix()}"
        text = path.read_text()
        if rel.as_posix() == "deploy.yaml":
            text, found = derive.apply_deploy(text, spec, name)
        elif rel.as_posix() == "perf.yaml":
            text, found = derive.apply_env_file(text, spec.perf_env, spec, name)
        elif rel.as_posix() == "recipe.yaml":
            text, found = derive.apply_metadata(text, spec, name)
        elif path.suffix in (".yaml", ".yml"):
            text, found = derive.apply_env_file(text, spec.epp_env, spec, name)
        else:
            text, found = derive.rename(text, spec), []
        changes += found
        target.write_text(text)
    model_dir = work / plan.model_dir
    if spec.storage_class:
        cache = model_dir / "model-cache" / "model-cache.yaml"
        text, found = derive.apply_storage_class(
            cache.read_text(), spec.storage_class, f"{plan.model_dir}/model-cache/model-cache.yaml"
        )
        cache.write_text(text)
        changes += found
    readme = model_dir / "README.md"
    if readme.is_file():
        text = readme.read_text()
        for section, lines in plan.readme.items():
            text = _readme_section(text, section, plan, lines)
        if plan.namespace:
            text, n = re.subn(r"(?m)^(export NAMESPACE=)\S+", rf"\g<1>{plan.namespace}", text)
            if n:
                changes.append(
                    derive.Change(f"{plan.model_dir}/README.md", "NAMESPACE", "", plan.namespace, "--set namespace")
                )
        readme.write_text(text)
        changes.append(
            derive.Change(
                f"{plan.model_dir}/README.md",
                "rows",
                "",
                plan.readme_key,
                "the variant's overview, hardware, benchmark and limits",
            )
        )
    return changes


def _readme_section(text: str, section: str, plan, lines: list[str]) -> str:
    from harness.recipe import derive

    if section == "Known limits":
        return derive.replace_bullets(text, section, plan.readme_key, plan.readme_source_key, lines)
    for line in lines:
        text = derive.upsert_readme(text, section, plan.readme_key, plan.readme_source_key, line)
    return text


def _changed(work: Path, dest: Path) -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(work.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(work).as_posix()
        new = path.read_text(errors="replace")
        orig = dest / rel
        old = orig.read_text(errors="replace") if orig.is_file() else ""
        if new != old:
            out.append((rel, old, new))
    return out


def run(args: argparse.Namespace) -> int:
    from harness.analysis.docs import write as write_docs
    from harness.analysis.variant import plan_variant
    from harness.commands.convert import unified_diff, write_atomic
    from harness.recipe.derive import DeriveError, UsageError, variant_mode
    from harness.recipe.discovery import SelectionError
    from harness.run.prove import prove
    from harness.run.static import make_selection
    from harness.run.strict import StrictValueError, strict_from_env

    try:
        strict_env = strict_from_env()
    except StrictValueError as exc:
        return _usage(str(exc))
    sets = dict(args.sets)
    if not sets:
        return _usage("nothing to derive: give at least one --set KEY=VALUE\n" + _keys_help())
    try:
        selection = make_selection(args.recipes_dir)
    except SelectionError as exc:
        return _usage(str(exc))
    by_id = {r.id: r for r in selection.all}
    recipe = by_id.get(args.recipe.strip("/"))
    if recipe is None:
        return _usage(f"no recipe {args.recipe!r} in {selection.root}; recipes: {', '.join(sorted(by_id))}")
    cluster_keys = [k for k in ("storage-class", "namespace") if k in sets]
    if cluster_keys and args.out is None:
        return _usage(
            f"--set {', '.join(cluster_keys)}: cluster settings go into your own tree (--out DIR); in the catalogue "
            "the model cache is shared by every recipe of the model and no manifest names a namespace"
        )
    dest = (args.out or selection.root).absolute()
    if args.out is not None and dest.exists() and not (dest / "versions.yaml").is_file():
        return _usage(f"--out {args.out}: exists but is not a recipes tree (no versions.yaml); name a new directory")
    mode = args.name or variant_mode(recipe.mode, sets)
    if mode == recipe.mode and (args.out is None or dest == selection.root.absolute()):
        return _usage(f"--name {mode}: that is the source recipe itself; choose another name")
    try:
        plan = plan_variant(recipe, sets, mode, _model_dirs(selection.all), estimate=estimator())
    except UsageError as exc:
        return _usage(str(exc))
    spec = plan.spec
    print(f"derive {recipe.id} -> {spec.variant_id} ({', '.join(f'{k}={v}' for k, v in sets.items())})")
    for note in plan.notes:
        print(f"  note: {note}")
    if plan.refusals:
        print(f"refused: {spec.variant_id} cannot run:")
        for r in plan.refusals:
            print(f"  {r.format()}")
        return 1
    strict = args.strict or bool(strict_env)
    with tempfile.TemporaryDirectory(prefix="recipe-derive-") as tmp:
        work = Path(tmp) / "recipes"
        shutil.copytree(dest if dest.exists() else selection.root, work, symlinks=True)
        try:
            changes = build_variant(work, recipe.path, plan, spec.variant_id)
        except DeriveError as exc:
            print(f"refused: {exc}")
            return 1
        write_docs(make_selection(work).tree)
        print(f"\nchanges ({len(changes)}):")
        for c in changes:
            print(f"  {c.format()}")
        touched = {rel for rel, _, _ in _changed(work, dest if dest.exists() else selection.root)}
        results = prove(work, spec.variant_id, touched)
        print("\nproof:")
        failed, missing = [], []
        for r in results:
            print(f"  {r.tier}: {r.status()}")
            for line in r.failures:
                print(f"    {line.replace(str(work), str(dest))}")
            for line in r.notes:
                print(f"    note: {line.replace(str(work), str(dest))}")
            if not r.ran:
                missing.append(r)
            elif r.failures:
                failed.append(r)
        blocked = failed + (missing if strict else [])
        if missing and not strict:
            print(
                f"  not proven by {', '.join(r.tier for r in missing)} (could not run; --strict makes that a failure)"
            )
        if blocked and not args.force:
            print(
                f"\nnot written: {spec.variant_id} fails {', '.join(r.tier for r in blocked)} "
                "(--force writes it with the findings)"
            )
            return 1
        if blocked:  # --force: the variant carries its findings
            _carry_findings(work, plan, blocked)
            write_docs(make_selection(work).tree)
        files = _changed(work, dest if dest.exists() else selection.root)  # a new --out: what differs from the source
        if args.dry_run:
            print(f"\n--- diff ({len(files)} file(s); --dry-run: nothing written) ---")
            for rel, old, new in files:
                sys.stdout.writelines(unified_diff(old, new, rel))
            return 1 if blocked else 0
        if args.out is not None and not dest.exists():
            shutil.copytree(work, dest, symlinks=True)
        else:
            for rel, _old, new in files:
                write_atomic(dest / rel, new)
        print(
            f"\nwrote {spec.variant_id} into {dest}: {len(files)} file(s) changed"
            + (" (with --force: it carries its findings)" if blocked else "")
        )
        for rel, _, _ in files:
            print(f"  {rel}")
        print(f"rehearse it: pytest -m sim --recipe {spec.variant_id}" + (f" --recipes-dir {dest}" if args.out else ""))
    return 1 if blocked else 0


def _carry_findings(work: Path, plan, blocked) -> None:
    """--force: the variant's recipe.yaml knownLimits and the model README list what failed."""
    from harness.recipe import derive

    lines = []
    for r in blocked:
        if not r.ran:
            lines.append(f"derive --force: not proven by the {r.tier} tier: {r.why_not}")
        for f in r.failures:
            lines.append(f"derive --force: {r.tier} tier: {f.replace(str(work) + '/', '')}")
    spec = plan.spec
    spec.known_limits = spec.known_limits + lines
    meta = work / spec.variant_id / "recipe.yaml"
    text, _ = derive.apply_metadata(meta.read_text(), spec, f"{spec.variant_id}/recipe.yaml")
    meta.write_text(text)
    readme = work / plan.model_dir / "README.md"
    if readme.is_file():
        plan.readme["Known limits"] += [f"- {plan.readme_key}: {line}" for line in lines]
        readme.write_text(_readme_section(readme.read_text(), "Known limits", plan, plan.readme["Known limits"]))
