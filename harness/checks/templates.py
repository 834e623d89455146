"""Template checks: a recipe whose manifests hold placeholders the user must replace says so once."""

from __future__ import annotations

from collections.abc import Iterator

from harness.checks import PLACEHOLDER_CHECK, CheckContext, check
from harness.recipe.findings import Problem, Severity, display_path, problem
from harness.recipe.model import Recipe
from harness.recipe.templates import placeholders


@check(PLACEHOLDER_CHECK, severity=Severity.WARNING)
def template_placeholders(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A manifest the README tells the user to edit (`namespace: <your-namespace>`), or an envsubst template
    whose variable has no sample value anywhere in the recipe, is a template: it cannot be applied as it is,
    and what the user puts there is unknown. It is reported once per recipe, as a warning, and no error is
    reported on a line holding such a placeholder (a placeholder is not a defect of the recipe). An envsubst
    template whose variables all have documented sample values (`hw/h100.env`, `export VAR=...` in the
    README or script) is checked rendered with them instead, and is no template warning. Placeholders in
    `image:` values are reported by `image-reference-pinned`, which names the published tag to use.

    Fails: `metadata: {name: demo, namespace: <your-namespace>}` with a README line "replace
    `<your-namespace>` with your namespace" (one warning; the schema's DNS-1123 error on that line is not
    reported). Fix: nothing, when the recipe is a template on purpose; or apply with `kubectl -n` and drop
    the field.

    Source: GNU gettext `envsubst` (substitutes `$VAR` and `${VAR}`, only the SHELL-FORMAT's variables when
    given); the recipe's own README (what it tells the user to replace).
    """
    found = [p for p in placeholders(recipe) if not p.image]
    if not found:
        return
    by_token: dict[str, dict[str, list[int]]] = {}
    for p in found:
        where = _short(p.loc.file, recipe)
        by_token.setdefault(p.token, {}).setdefault(where, []).append(p.loc.line)
    parts = []
    for token, files in by_token.items():
        places = "; ".join(f"{f}:{', '.join(map(str, lines))}" for f, lines in files.items())
        doc = next(p.documented for p in found if p.token == token)
        parts.append(f"{token!r} ({places}; see {_short(doc.file, recipe)}:{doc.line})")
    first = found[0]
    yield problem(
        first.loc,
        f"template: {len(found)} value(s) are placeholders to replace before applying: {'; '.join(parts)}; "
        "errors on those lines are not reported",
        "replace them (or render the template) before `kubectl apply`; the checks judge the rest",
    )


def _short(path, recipe: Recipe) -> str:
    """A path below the recipe's model directory as written there (`sglang/disagg/deploy.yaml`)."""
    try:
        return path.relative_to(recipe.model_dir).as_posix()
    except ValueError:
        return display_path(path)
