"""Kustomize checks: every kustomization of the tree builds with the real kustomize.

The rendered objects of each build are checked by every other check as a recipe of their own
(harness.recipe.discovery.kustomize_recipes); this module reports what stops a build.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from harness.checks import CheckContext, check
from harness.recipe.discovery import RecipeTree, kustomize_view
from harness.recipe.findings import Loc, Problem, Severity, display_path, problem


@dataclass(frozen=True)
class KustomizeOptions:
    """required: a kustomization that cannot be built because no kustomize is found is an error, not a
    warning (the run is strict: `RECIPE_HARNESS_STRICT`, harness.run.strict)."""

    required: bool = False


@check("kustomize-build", severity=Severity.ERROR, scope="tree", options=KustomizeOptions)
def kustomize_build(tree: RecipeTree, ctx: CheckContext) -> Iterator[Problem]:
    """Every kustomization that is built on its own (an overlay, or a base no overlay uses; a Component
    never is) builds with `kustomize build`: the error is kustomize's own message, at the kustomization.

    A user applies an overlay with `kubectl apply -k DIR` or `kustomize build DIR | kubectl apply -f -`;
    a missing resource or a patch whose target or path does not exist stops that command before anything
    is applied, and the objects the overlay would render are never checked. Without a kustomize binary
    the build cannot run: one warning per kustomization (an error under `RECIPE_HARNESS_STRICT`), and
    its resources are checked as plain files.

    Fails: `resources: [../base, missing.yaml]` (kustomize: `accumulating resources: ... missing.yaml:
    no such file or directory`); a JSON 6902 patch `add` at `/spec/containers/0/env/-` of an object
    without that path (`add operation does not apply: doc is missing path`).
    Fix: name resources that exist; patch paths the base has.

    Source: kustomize v5.8.0 (sigs.k8s.io/kustomize/kustomize/v5), run as is (kustomize on PATH,
    `$RECIPE_HARNESS_KUSTOMIZE`, the cached build of `recipe-harness cluster setup`, or `kubectl kustomize`).
    """
    view = kustomize_view(tree.root, tree.cache)
    required = ctx.options_for(KustomizeOptions).required
    for directory in view.tree.roots:
        kfile = view.tree.kustomizations[directory].file
        built = view.builds.get(directory)
        if view.runner is None or built is None:
            yield problem(
                Loc(kfile),
                f"kustomization {display_path(directory)} not built: no kustomize to run it, so its rendered "
                "objects are not checked (its resources are checked as plain files)",
                "install kustomize (`recipe-harness cluster setup` builds it with Go), put it on PATH or name "
                "it in RECIPE_HARNESS_KUSTOMIZE",
                Severity.ERROR if required else Severity.WARNING,
            )
        elif not built.ok:
            yield problem(
                Loc(kfile),
                f"`kustomize build {os.path.relpath(directory, tree.root)}` fails: {built.error}",
                "fix the resource, component or patch kustomize names",
            )
