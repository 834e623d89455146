"""Documentation checks: generated docs are current, and every model README has one format and
states the same GPU, node and benchmark figures as the metadata."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.docs import stale_files
from harness.checks import CheckContext, check
from harness.recipe.discovery import RecipeTree
from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import Document, dig, sequence

README = "README.md"
# The model README format: a `# <model>` title, then these sections in this order.
REQUIRED_SECTIONS = ("Overview", "Hardware", "Deploy", "Benchmark", "Known limits")
_HARDWARE_BULLET = re.compile(
    r"^- `(?P<mode>[^`]+)`: (?P<gpus>\d+) x (?P<gpu>[A-Za-z0-9]+)\b.*? on (?P<nodes>\d+) nodes?\b"
)
_CONCURRENCY = re.compile(r"^(?P<total>\d+)(?: \((?P<per_gpu>\d+) x (?P<gpus>\d+)\))?")


@check("docs-in-sync", scope="tree", convention=True)
def docs_in_sync(tree: RecipeTree, ctx: CheckContext) -> Iterator[Problem]:
    """`recipes/README.md` (catalogue, version matrix, targets) and `recipes/SIZING.md` (GPU memory
    and storage sizing) are generated from the metadata, the manifests and the catalogues by
    `recipe-harness docs`; an edit that skips the regeneration leaves users reading GPU counts
    and sizes that are no longer true (an upstream README did).

    Fails: `gpus: 16` changed to `gpus: 8` in a recipe.yaml without running `recipe-harness docs`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    expected text is what `recipe-harness docs` generates (harness/analysis/docs.py `stale_files`) from
    recipe.yaml, the manifests and harness/recipe/data/{gpus,models}.yaml.
    """
    for stale in stale_files(tree):
        if stale.actual is None:
            yield problem(
                Loc(stale.path),
                f"{stale.path.name} is missing: it is generated from the recipes",
                "run `recipe-harness docs` and commit the result",
            )
            continue
        line = stale.first_line
        expected = stale.expected.splitlines()
        want = expected[line - 1] if line <= len(expected) else "(end of file)"
        yield problem(
            Loc(stale.path, line),
            f"{stale.path.name} is stale: {stale.summary()}; the generator writes {want[:100]!r}",
            "run `recipe-harness docs` and commit the result",
        )


@dataclass
class Markdown:
    """A README split into headings and tables, code blocks left out, with line numbers."""

    path: Path
    lines: list[tuple[int, str]] = field(default_factory=list)  # outside fenced code

    @classmethod
    def read(cls, path: Path) -> Markdown:
        md = cls(path)
        fenced = False
        for n, text in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if text.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if not fenced:
                md.lines.append((n, text))
        return md

    def headings(self) -> list[tuple[int, int, str]]:
        out = []
        for n, text in self.lines:
            m = re.match(r"^(#{1,6}) +(.*?)\s*#*\s*$", text)
            if m:
                out.append((n, len(m.group(1)), m.group(2)))
        return out

    def section(self, title: str) -> list[tuple[int, str]]:
        """The lines under `## title` up to the next heading of level 1 or 2."""
        out: list[tuple[int, str]] = []
        inside = False
        for n, text in self.lines:
            m = re.match(r"^(#{1,2}) +(.*?)\s*$", text)
            if m:
                inside = m.group(2).strip().lower() == title.lower()
                continue
            if inside:
                out.append((n, text))
        return out

    def table(self, title: str) -> tuple[int, list[str], list[tuple[int, list[str]]]] | None:
        """(header line, column names, rows) of the first table in a section."""
        rows = [(n, t) for n, t in self.section(title) if t.strip().startswith("|")]
        if len(rows) < 2:
            return None
        split = lambda t: [c.strip() for c in t.strip().strip("|").split("|")]  # noqa: E731
        header_line, header = rows[0][0], split(rows[0][1])
        body = [(n, split(t)) for n, t in rows[1:] if not re.match(r"^\|?\s*:?-{3,}", t.strip())]
        return header_line, header, body


def _column(header: list[str], name: str) -> int | None:
    for i, h in enumerate(header):
        if h.lower().startswith(name.lower()):
            return i
    return None


def _int(text: str) -> int | None:
    m = re.match(r"^\s*(\d+)", text.replace(",", ""))
    return int(m.group(1)) if m else None


def _by_mode(recipes: list[Recipe]) -> dict[str, Recipe]:
    return {f"{r.framework}/{r.mode}": r for r in recipes}


@check("model-readme-format", scope="tree", convention=True)
def model_readme_format(tree: RecipeTree, ctx: CheckContext) -> Iterator[Problem]:
    """Every `recipes/<model>/README.md` follows one format (a `# <model>` title, then Overview,
    Hardware, Deploy, Benchmark, Known limits, in that order) so users find the same thing in the
    same place, and the GPU totals, node counts and benchmark figures it states for each recipe
    match the metadata: an upstream README told users to reserve the wrong number of GPUs.

    Fails: the Overview row of `vllm/disagg-single-node` says 16 GPUs while recipe.yaml says `gpus: 8`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    section list is REQUIRED_SECTIONS in harness/checks/docs.py; the figures it compares are recipe.yaml
    `gpus`, `nodes`, `hardware.gpu` and `benchmark.*`.
    """
    models: dict[Path, list[Recipe]] = {}
    for r in tree.catalogued:  # the kustomize overlays are listed in recipes/README.md and recipes/kustomize/
        models.setdefault(r.model_dir, []).append(r)
    for model_dir in sorted(models):
        path = model_dir / README
        if not path.is_file():
            continue  # layout-tree reports a missing README
        md = Markdown.read(path)
        yield from _format(md)
        recipes = _by_mode(models[model_dir])
        yield from _overview(md, recipes)
        yield from _hardware(md, recipes)
        yield from _benchmark(md, recipes)


def _format(md: Markdown) -> Iterator[Problem]:
    heads = md.headings()
    if not heads or heads[0][1] != 1:
        yield problem(
            Loc(md.path, heads[0][0] if heads else 1),
            "the README must start with a `# <model name>` title",
            "add a level-1 title as the first heading",
        )
    found = [(n, title) for n, level, title in heads if level == 2 and title in REQUIRED_SECTIONS]
    titles = [t for _, t in found]
    for want in REQUIRED_SECTIONS:
        if want not in titles:
            yield problem(
                Loc(md.path, 1),
                f"section `## {want}` is missing (the model README format is {', '.join(REQUIRED_SECTIONS)})",
                f"add `## {want}`",
            )
    order = [t for t in REQUIRED_SECTIONS if t in titles]
    for (n, title), expected in zip(found, order):
        if title != expected:
            yield problem(
                Loc(md.path, n),
                f"section `## {title}` is out of order: the format is {', '.join(REQUIRED_SECTIONS)}",
                "move the section to its place",
            )
            break


def _row_recipe(md: Markdown, n: int, cell: str, recipes: dict[str, Recipe]) -> Iterator[Problem | Recipe]:
    mode = cell.strip("` ")
    recipe = recipes.get(mode)
    if recipe is None:
        yield problem(
            Loc(md.path, n),
            f"{mode!r} is not a recipe of this model ({', '.join(sorted(recipes))})",
            "name recipes as <framework>/<mode>, or remove the row",
        )
    else:
        yield recipe


def _compare(
    md: Markdown, n: int, what: str, stated: int | str | None, recipe: Recipe, key: tuple[str, ...]
) -> Iterator[Problem]:
    actual = dig(recipe.metadata, *key)
    if stated is None or actual is None or stated == actual:
        return
    yield problem(
        Loc(md.path, n),
        f"README states {stated} {what} for {recipe.framework}/{recipe.mode} but its recipe.yaml says "
        f"{'.'.join(key)}: {actual}",
        f"write {actual} (the metadata is checked against the manifests)",
    )


def _overview(md: Markdown, recipes: dict[str, Recipe]) -> Iterator[Problem]:
    table = md.table("Overview")
    if table is None:
        return
    header_line, header, rows = table
    cols = {name: _column(header, name) for name in ("Recipe", "GPUs", "Nodes")}
    if cols["Recipe"] is None:
        yield problem(
            Loc(md.path, header_line),
            "the Overview table has no Recipe column",
            "add `| Recipe | ... | GPUs | Nodes |`",
        )
        return
    seen = set()
    for n, cells in rows:
        for item in _row_recipe(md, n, cells[cols["Recipe"]] if cols["Recipe"] < len(cells) else "", recipes):
            if isinstance(item, Problem):
                yield item
                continue
            seen.add(f"{item.framework}/{item.mode}")
            for col, what, key in (("GPUs", "GPUs", ("gpus",)), ("Nodes", "nodes", ("nodes",))):
                i = cols[col]
                if i is not None and i < len(cells):
                    yield from _compare(md, n, what, _int(cells[i]), item, key)
    for mode in sorted(set(recipes) - seen):
        yield problem(
            Loc(md.path, header_line), f"the Overview table has no row for recipe {mode}", f"add a row for `{mode}`"
        )


def _hardware(md: Markdown, recipes: dict[str, Recipe]) -> Iterator[Problem]:
    for n, text in md.section("Hardware"):
        m = _HARDWARE_BULLET.match(text)
        if not m or m.group("mode") not in recipes:
            continue
        recipe = recipes[m.group("mode")]
        yield from _compare(md, n, "GPUs", int(m.group("gpus")), recipe, ("gpus",))
        yield from _compare(md, n, "as the GPU", m.group("gpu"), recipe, ("hardware", "gpu"))
        yield from _compare(md, n, "nodes", int(m.group("nodes")), recipe, ("nodes",))


def _benchmark(md: Markdown, recipes: dict[str, Recipe]) -> Iterator[Problem]:
    table = md.table("Benchmark")
    if table is None:
        return
    _, header, rows = table
    recipe_col = _column(header, "Recipe")
    if recipe_col is None:
        return
    cols = {name: _column(header, name) for name in ("ISL", "OSL", "Concurrency", "Requests")}
    for n, cells in rows:
        if recipe_col >= len(cells):
            continue
        recipe = recipes.get(cells[recipe_col].strip("` "))
        if recipe is None:
            continue
        for col, key in (
            ("ISL", ("benchmark", "isl")),
            ("OSL", ("benchmark", "osl")),
            ("Requests", ("benchmark", "requestCount")),
        ):
            i = cols[col]
            if i is not None and i < len(cells):
                yield from _compare(md, n, col, _int(cells[i]), recipe, key)
        i = cols["Concurrency"]
        m = _CONCURRENCY.match(cells[i]) if i is not None and i < len(cells) else None
        if m:
            yield from _compare(md, n, "concurrency", int(m.group("total")), recipe, ("benchmark", "concurrency"))
            if m.group("gpus"):
                yield from _compare(md, n, "GPUs", int(m.group("gpus")), recipe, ("gpus",))
                yield from _compare(
                    md, n, "concurrency per GPU", int(m.group("per_gpu")), recipe, ("benchmark", "concurrencyPerGpu")
                )


# `kubectl apply|create|replace ... -f <file>` in a README; the file operands are read with shlex.
_KUBECTL_FILE_CMD = re.compile(r"\bkubectl\s+(?:apply|create|replace)\b")
_FILE_FLAGS = ("-f", "--filename")


def _kubectl_files(text: str) -> list[str]:
    """The `-f` operands of one kubectl command line (continuations already joined)."""
    m = _KUBECTL_FILE_CMD.search(text)
    if m is None:
        return []
    rest = re.split(r"\s(?:\||&&|\|\||;)\s", text[m.end() :], maxsplit=1)[0]
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:
        return []
    out = []
    for i, w in enumerate(words):
        if w in _FILE_FLAGS and i + 1 < len(words):
            out.append(words[i + 1])
        elif w.startswith(("-f=", "--filename=")):
            out.append(w.split("=", 1)[1])
    return out


def _literal_path(value: str) -> bool:
    """A path the README names exactly: no variable, placeholder, glob, URL or stdin."""
    return (
        bool(value)
        and value != "-"
        and "://" not in value
        and not value.startswith(("/", "~"))
        and not any(ch in value for ch in "$<>{}*?[]`")
    )


@check("readme-applied-files-exist", scope="tree")
def readme_applied_files_exist(tree: RecipeTree, ctx: CheckContext) -> Iterator[Problem]:
    """A file a README tells the user to apply (`kubectl apply -f model-cache/model-download.yaml`,
    also `kubectl create|replace -f`) exists in the tree: a user who follows the README gets
    `error: the path "..." does not exist` and, when it is the PVC or the download Job, pods that
    stay Pending on a volume nobody created. Upstream model READMEs told users to apply a
    `model-cache/model-cache.yaml` and a `model-download.yaml` that the model's directory did not
    have.

    Exact on purpose: only literal relative paths are judged (no `$VAR`, `<placeholder>`, glob, URL
    or `-f -`), and a path counts as present when it resolves from the README's directory, from the
    recipes root or from the repository root above it (READMEs written for `cd recipes/...` or for
    the repository root both work), from the directory a `cd DIR` line before it moved to (nothing is
    judged after `cd <model>/<mode>/`, a placeholder), or from the README's working directory: the
    directory between it and the repository root from which most of its applied files resolve (a
    recipe README written for the model directory).

    Fails: `kubectl apply -f model-cache/model-download.yaml` in `<model>/README.md` while
    `<model>/model-cache/` has no model-download.yaml.
    Fix: add the file, or point the command at the one that exists.

    Source: kubectl's `-f, --filename` (files, directories or URLs; `-` for stdin), kubectl
    reference `kubectl apply`.
    """
    dirs = {tree.root}
    for r in tree.recipes:
        dirs.update((r.path, r.model_dir))
    readmes = sorted({d / README for d in dirs if (d / README).is_file()})
    for path in readmes:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue  # yaml/markdown well-formedness is not this check's business
        applied = list(_applied_files(lines))
        workdir = _working_directory(path.parent, tree.root, [name for _, name, cwd in applied if cwd is not None])
        for line, name, cwd in applied:
            if cwd is None:
                continue  # after `cd <placeholder>`: the directory the user is in is theirs to fill
            bases = (path.parent, tree.root, tree.root.parent, workdir, *((path.parent / cwd,) if cwd else ()))
            if any((base / name).exists() for base in bases):
                continue
            yield problem(
                Loc(path, line),
                f"the README applies {name}, which does not exist "
                f"(looked in {path.parent.name}/, the recipes root and the repository root)",
                "add the file, or point the command at the manifest that exists",
            )


_CD = re.compile(r"^\s*(?:\$\s+)?cd\s+(\S+)\s*(?:[;&#].*)?$")


def _applied_files(lines: list[str]) -> Iterator[tuple[int, str, str | None]]:
    """(line, literal file operand, the `cd` directory it runs in: "" none, None a placeholder) of every
    kubectl apply|create|replace in a README; a `cd DIR` line changes the directory of the lines after it."""
    cwd: str | None = ""
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i]
        i += 1
        m = _CD.match(text)
        if m:
            target = m.group(1)
            if cwd is None or not _literal_path(target):
                cwd = None  # `cd <model>/<mode>/`: from here on the directory is the user's choice
            else:
                cwd = f"{cwd}/{target}" if cwd else target
        for name in _kubectl_files(text):  # also `cd DIR && kubectl apply -f x.yaml`: x.yaml is read in DIR
            if _literal_path(name):
                yield start + 1, name, cwd


def _working_directory(readme_dir: Path, root: Path, names: list[str]) -> Path:
    """The directory a README's commands are written for: of the README's directory and its ancestors up
    to the repository root, the one from which most of its applied files resolve (the nearest on a tie).
    A model README whose recipe paths start at the model directory (`kubectl apply -f trtllm/disagg/deploy.yaml`
    in `<model>/trtllm/disagg/README.md`) is read from there; one stray path among paths that resolve
    from the README's own directory is still reported."""
    candidates = [readme_dir, *(p for p in readme_dir.parents if p == root.parent or p.is_relative_to(root))]
    best, score = readme_dir, -1
    for d in candidates:
        found = sum((d / n).exists() for n in names)
        if found > score:
            best, score = d, found
    return best


def _readmes(tree: RecipeTree) -> list[Path]:
    dirs = {tree.root}
    for r in tree.recipes:
        dirs.update((r.path, r.model_dir))
    return sorted({d / README for d in dirs if (d / README).is_file()})


def _manifests(path: Path) -> list[Path]:
    """The YAML files `kubectl apply -f PATH` reads: the file, or a directory's *.yaml/*.yml/*.json."""
    if path.is_dir():
        return sorted(p for ext in ("*.yaml", "*.yml", "*.json") for p in path.glob(ext))
    return [path] if path.is_file() else []


def _job_claims(doc: Document) -> list[str]:
    volumes = sequence(dig(doc.data, "spec", "template", "spec", "volumes")) or []
    return [str(c) for v in volumes if (c := dig(v, "persistentVolumeClaim", "claimName")) is not None]


@check("readme-applies-download-claims", scope="tree")
def readme_applies_download_claims(tree: RecipeTree, ctx: CheckContext) -> Iterator[Problem]:
    """A README that applies a Job mounting a PersistentVolumeClaim (the model download Job) also applies
    the manifest beside that Job which creates the claim, or at least names it: otherwise a user who
    follows the quick start gets a Job Pending forever on `persistentvolumeclaim "model-cache" not found`.
    A README that names the PVC manifest anywhere (a prerequisite "edit model-cache.yaml and apply it")
    or applies the whole directory passes; a claim no manifest beside the Job defines is left to
    `pvc-defined`.

    Fails: a README with `kubectl apply -f model-cache/model-download.yaml` and no word of
    `model-cache/model-cache.yaml`, the PVC the Job mounts.
    Fix: add `kubectl apply -f model-cache/model-cache.yaml` before it (or apply `model-cache/`).

    Source: Kubernetes: a pod whose `persistentVolumeClaim.claimName` does not exist stays Pending
    (concepts/storage/persistent-volumes, "Claims As Volumes"); kubectl `apply -f` reads only the files named.
    """
    for path in _readmes(tree):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        text = "\n".join(lines)
        applied = list(_applied_files(lines))
        workdir = _working_directory(path.parent, tree.root, [name for _, name, cwd in applied if cwd is not None])
        files: list[tuple[int, Path]] = []
        for line, name, cwd in applied:
            if cwd is None:
                continue
            bases = (*((path.parent / cwd,) if cwd else ()), path.parent, workdir, tree.root, tree.root.parent)
            target = next((b / name for b in bases if (b / name).exists()), None)
            files.extend((line, f) for f in (_manifests(target) if target is not None else []))
        docs = {f: (loaded.documents if (loaded := tree.cache.load_if_exists(f)) else []) for _, f in files}
        created = {d.name for ds in docs.values() for d in ds if d.kind == "PersistentVolumeClaim"}
        for line, f in files:
            for doc in docs[f]:
                if doc.kind != "Job":
                    continue
                for claim in _job_claims(doc):
                    if claim in created:
                        continue
                    maker = _pvc_manifest_beside(tree, f, claim)
                    if maker is None or maker.name in text:
                        continue
                    yield problem(
                        Loc(path, line),
                        f"the README applies {f.name}, whose Job {doc.name} mounts PVC {claim!r}, but never applies "
                        f"{maker.name} beside it, which creates that PVC: the Job stays Pending",
                        f"apply {maker.name} first (or the whole {maker.parent.name}/ directory)",
                    )


def _pvc_manifest_beside(tree: RecipeTree, job_file: Path, claim: str) -> Path | None:
    for other in _manifests(job_file.parent):
        loaded = tree.cache.load_if_exists(other)
        if loaded and any(d.kind == "PersistentVolumeClaim" and d.name == claim for d in loaded.documents):
            return other
    return None
