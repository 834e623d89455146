"""Gathers the parse jobs of the selected recipes, runs them in the conformance envs, and maps results to findings.

One job per service that runs `python -m dynamo.<x>` (frontend and workers). The command line is
what the container executes (YAML folding, `sh -c` splitting, `$(VAR)`/`$VAR` expansion: the
model's `Container.argv()`), with config files the engine reads (`--config` YAML for vLLM and
SGLang, `--extra-engine-args` for TRT-LLM) taken from ConfigMaps of the same manifest. All jobs of
one env run in one driver process: one import, many parses. A parser error becomes a finding at
the flag's file:line with the parser's own message.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.recipe.commandline import Token, dynamo_engine, dynamo_module_at
from harness.recipe.configfiles import MountedFile, mounted_file
from harness.recipe.findings import Finding, Loc, Severity, display_path
from harness.recipe.flagvalues import load_surface
from harness.recipe.model import Recipe
from harness.recipe.model_configs import model_config
from harness.recipe.service import Service
from harness.recipe.versions import VERSIONS_FILE, version_matrix
from harness.recipe.yamlsrc import SrcMap, parse_yaml_bytes
from harness.run.conformance import crosscheck, envs, trtllm

CHECK_ID = "conformance"
DRIVER = Path(__file__).with_name("driver.py")
DRIVER_TIMEOUT_S = 900
# The flag that names a config file the engine reads, per parser.
CONFIG_FLAGS = {"vllm": ("--config",), "sglang": ("--config",), "trtllm": ("--extra-engine-args",)}
_FLAG_IN_TEXT = re.compile(r"(?<![\w-])(--[A-Za-z0-9][A-Za-z0-9_.-]*)")


@dataclass
class Job:
    """One command line to parse: a service's `python -m dynamo.<x>` call."""

    recipe: Recipe
    service: str
    release: str
    framework: str  # the recipe's framework: picks the env (vllm | sglang | trtllm)
    parser: str  # vllm | sglang | trtllm | frontend
    module: Token  # the `dynamo.<x>` token: where a finding goes when no flag is named
    argv: list[Token]
    files: list[MountedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skip_reason: str | None = None  # a service with no command line the tier can parse: why (the item says so)

    @property
    def id(self) -> str:
        return f"{self.recipe.id}::{self.service}"

    def request(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parser": self.parser,
            "argv": [t.value for t in self.argv],
            "files": {f.path: f.content for f in self.files},
            "dests": crosscheck.wanted(self),
        }


@dataclass
class ParseResult:
    """What the real parser said about one job (or why it could not run)."""

    ok: bool
    kind: str | None = None
    error: str | None = None
    unrecognized: list[str] = field(default_factory=list)
    where: str | None = None
    warnings: list[str] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)
    additions: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    unavailable: str | None = None  # the env is not set up: the skip reason, naming the setup command
    env: str = ""  # the env that parsed it, with versions
    parsed: dict[str, Any] | None = None  # the parsers' stages and namespace values (for the cross-check)
    stub_models: dict[str, str] = field(default_factory=dict)  # model -> which config.json the stub cache held

    @classmethod
    def from_driver(cls, data: dict[str, Any], env: str) -> ParseResult:
        return cls(
            ok=bool(data.get("ok")),
            kind=data.get("kind"),
            error=data.get("error"),
            unrecognized=list(data.get("unrecognized") or []),
            where=data.get("where"),
            warnings=list(data.get("warnings") or []),
            substitutions=list(data.get("substitutions") or []),
            additions=list(data.get("additions") or []),
            summary=data.get("summary"),
            env=env,
            parsed=data.get("parsed"),
            stub_models=dict(data.get("stub_models") or {}),
        )


@dataclass
class JobOutcome:
    """A job, its parse result and the findings they give."""

    job: Job
    result: ParseResult
    findings: list[Finding]

    @property
    def skipped(self) -> str | None:
        return self.result.unavailable or self.job.skip_reason


# ---- the command line (the one place to switch to the operator's rendering) -----------------------


def command_lines(recipe: Recipe, service: Service) -> list[tuple[str, Token, list[Token]]]:
    """(pod role, the `dynamo.<x>` module token, the arguments) for each pod form of the service whose
    engine process receives a distinct command line.

    THE adapter: everything else reads the argv from here. It is the operator's pod rendering
    (harness/analysis/render.py, Grove, the 1.x default for multinode): the multinode wrappers, the
    injected `--nnodes`/`--node-rank` flags, the kubelet's `$(VAR)` expansion and the shell's parsing,
    down to the argv the engine receives. Where rendering fails, the model's view of the main
    container (exec form, `sh -c` scripts, env expansion) stands in."""
    from harness.analysis.render import render_service

    dep = recipe.deployment
    try:
        pods = render_service(service, dep.name, dep.backend_framework, dep.spec) if dep is not None else []
    except Exception:
        pods = []
    out: list[tuple[str, Token, list[Token]]] = []
    seen: set[tuple[str, ...]] = set()
    for pod in pods:
        argv = pod.engine_argv or []
        at = dynamo_module_at(argv)
        if at is not None:
            key = tuple(t.value for t in argv[at:])
            if key not in seen:
                seen.add(key)
                out.append((pod.role, argv[at], list(argv[at + 1 :])))
    if out or pods:
        return out
    main = service.main
    inv = main.dynamo_invocation() if main is not None else None
    return [("single", inv[0], list(inv[1]))] if inv else []


# ---- gathering jobs -------------------------------------------------------------------------------


def engine_version(recipe: Recipe, release: str, framework: str) -> str | None:
    """The engine version `recipes/versions.yaml` pins for the release."""
    matrix = version_matrix(recipe.load(recipe.root / VERSIONS_FILE))
    rel = matrix.release(release) if matrix else None
    return rel.backends.get(framework) if rel else None


PARSERS = ("vllm", "sglang", "trtllm", "frontend")


def jobs_for(recipe: Recipe) -> list[Job]:
    """One job per command line of every service: the ones that run a Dynamo module the tier parses, and
    for every other service a job that says why it is not parsed, so a run never checks fewer services
    than the recipe has without saying so. None for a recipe without a deployment."""
    dep = recipe.deployment
    if dep is None:
        return []
    framework = dep.backend_framework or recipe.framework
    release = recipe.release
    out: list[Job] = []
    for svc in dep.services:
        forms = command_lines(recipe, svc)
        if not forms:
            out.append(_unparsed(recipe, svc, release, framework, _why_no_command(svc)))
        for role, module, argv in forms:
            parser = dynamo_engine(module.value)
            # a multinode service's pods may receive different command lines (leader, worker ranks)
            name = svc.name if len(forms) == 1 or role in ("single", "leader") else f"{svc.name}-{role}"
            if parser not in PARSERS:
                why = f"{module.value} is not an entry point the tier parses (dynamo.{', dynamo.'.join(PARSERS)})"
                out.append(_unparsed(recipe, svc, release, framework, why, name, module))
                continue
            job = Job(recipe, name, release, framework, parser, module, list(argv))
            _attach_config_files(job, svc)
            out.append(job)
    return out


def _why_no_command(svc: Service) -> str:
    main = svc.main
    if main is None:
        return "no main container: no command line to parse"
    words = [t.value for t in main.command + main.args]
    if not words:
        return f"no command or args: the image's entrypoint runs ({main.image}); nothing to parse"
    shown = " ".join(words)
    return f"its command starts no `python -m dynamo.<x>` ({shown[:80]}{'...' if len(shown) > 80 else ''}): not parsed"


def _unparsed(
    recipe: Recipe, svc: Service, release: str, framework: str, why: str, name: str = "", module: Token | None = None
) -> Job:
    where = module or Token(svc.name, svc.loc)
    return Job(recipe, name or svc.name, release, framework, "", where, [], skip_reason=f"{svc.name}: {why}")


def _attach_config_files(job: Job, svc: Service) -> None:
    """Resolve config-file flags to ConfigMap contents; a file not in the manifest is left out of the parse."""
    flags = CONFIG_FLAGS.get(job.parser, ())
    kept: list[Token] = []
    i = 0
    argv = job.argv
    while i < len(argv):
        tok = argv[i]
        name, eq, value = tok.value.partition("=")
        if name in flags and (eq or i + 1 < len(argv)):
            path = value if eq else argv[i + 1].value
            found = mounted_file(job.recipe, svc, path)
            if found is None:
                job.notes.append(
                    f"{name} {path}: not a ConfigMap of this manifest (baked into the image?): left out of the parse"
                )
                i += 1 if eq else 2
                continue
            job.files.append(found)
        kept.append(tok)
        i += 1
    job.argv = kept


# ---- running --------------------------------------------------------------------------------------

_CACHE: dict[str, ParseResult] = {}  # per process: the sim's first step reuses the conformance tier's parses


def _fingerprint(env: envs.Env, job: Job, extra: dict[str, Any]) -> str:
    return json.dumps([str(env.path), job.request(), extra], sort_keys=True)


def run_jobs(jobs: list[Job], root: Path | None = None) -> list[ParseResult]:
    """Parse every job (results in the jobs' order); one driver process per env.

    Jobs whose env is not set up get `unavailable`; jobs parsed before in this process are not parsed again."""
    results: list[ParseResult | None] = [None] * len(jobs)
    groups: dict[Path, tuple[envs.Env, list[tuple[int, Job, str]], dict[str, Any]]] = {}
    for n, job in enumerate(jobs):
        if job.skip_reason:
            results[n] = ParseResult(ok=False, kind="not_parsed", error=job.skip_reason)
            continue
        if not job.release:
            results[n] = ParseResult(
                ok=False,
                unavailable=(
                    f"{job.recipe.id}: no Dynamo release pinned (recipe.yaml versions.dynamo or a Dynamo image tag): "
                    f"nothing to parse against"
                ),
            )
            continue
        env = envs.locate(job.release, job.framework, root)
        if env is None:
            results[n] = ParseResult(
                ok=False,
                unavailable=(
                    f"conformance env for Dynamo {job.release} ({job.framework}) not set up: "
                    f"run `{envs.setup_command(job.release, job.framework)}`"
                ),
            )
            continue
        extra = _request_extras(job)
        key = _fingerprint(env, job, extra)
        if key in _CACHE:
            results[n] = _CACHE[key]
            continue
        group = groups.setdefault(env.path, (env, [], {}))
        group[1].append((n, job, key))
        _merge_extras(group[2], extra)
    for env, group, extra in groups.values():
        extra = dict(extra, vllm_cache_root=str(env.path / "vllm-cache"))
        parsed = _run_driver(env, [job for _, job, _ in group], extra)
        for (n, _job, key), result in zip(group, parsed):
            results[n] = _CACHE[key] = result
    return [r if r is not None else ParseResult(ok=False, kind="driver", error="not parsed") for r in results]


def _merge_extras(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """One request per env: model configs of all its jobs together, the other settings as they are."""
    for key, value in extra.items():
        if key == "model_configs":
            into.setdefault(key, {}).update(value)
        else:
            into[key] = value


def _request_extras(job: Job) -> dict[str, Any]:
    """Per-request settings: build the engine config (deep), the recorded real config.json of every model
    the command line names, and the tensorrt_llm stub's BuildConfig defaults from the recorded source."""
    out: dict[str, Any] = {"deep": True}
    configs = {}
    for tok in job.argv:
        found = model_config(tok.value)
        if found is not None:
            configs[found.model] = {"config": found.config, "source": found.label}
    if configs:
        out["model_configs"] = configs
    if job.parser != "trtllm":
        return out
    version = engine_version(job.recipe, job.release, "trtllm")
    surface = trtllm.load_surface(version) if version else None
    defaults = surface.data.get("build_config_defaults") if surface else None
    if isinstance(defaults, dict) and not any(str(v).startswith("<") for v in defaults.values()):
        out["trtllm_defaults"] = defaults
    return out


def _run_driver(env: envs.Env, jobs: list[Job], extra: dict[str, Any]) -> list[ParseResult]:
    shown = ", ".join(f"{k} {v}" for k, v in env.versions.items() if k in ("ai-dynamo", "vllm", "sglang"))
    label = f"{env.path.name} ({shown})"
    # request ids are positions: two trees may hold recipes with the same id
    request = {"jobs": [dict(j.request(), id=str(n)) for n, j in enumerate(jobs)], **extra}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [env.python, str(DRIVER)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_S,
        )
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr, code = f"driver timed out after {DRIVER_TIMEOUT_S} s", -1
    except OSError as exc:
        stdout, stderr, code = "", f"cannot run {env.python}: {exc}", -1
    by_id: dict[str, ParseResult] = {}
    for line in stdout.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "id" in data:
            by_id[str(data["id"])] = ParseResult.from_driver(data, label)
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    missing = ParseResult(
        ok=False,
        kind="driver",
        env=label,
        error=(f"the conformance driver gave no result (exit {code}, {time.monotonic() - t0:.0f} s):\n{tail}"),
    )
    return [by_id.get(str(n), missing) for n in range(len(jobs))]


# ---- results -> findings ------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _source_lines(path: Path) -> tuple[str, ...]:
    try:
        return tuple(path.read_text(errors="replace").splitlines())
    except OSError:
        return ()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def physical_loc(loc: Loc, word: str) -> Loc:
    """The line a word of a folded or plain multi-line scalar is written on.

    The model gives every word of a folded (`>-`) script the scalar's own position; the flag a user
    must edit is on one of the scalar's lines, found by scanning the scalar's indented block."""
    lines = _source_lines(Path(loc.file))
    if not lines or not (1 <= loc.line <= len(lines)):
        return loc
    pattern = re.compile(rf"(?<![\w-]){re.escape(word)}(?![\w-])")
    first = lines[loc.line - 1]
    m = pattern.search(first, loc.column - 1 if loc.column > 1 else 0)
    if m:
        return Loc(loc.file, loc.line, m.start() + 1)
    base = _indent(first)
    for n in range(loc.line, min(len(lines), loc.line + 400)):
        text = lines[n]
        if text.strip() and _indent(text) <= base:
            break  # left the scalar's block
        m = pattern.search(text)
        if m:
            return Loc(loc.file, n + 1, m.start() + 1)
    return loc


def _content_loc(f: MountedFile, line: int, column: int) -> Loc:
    """A position inside a ConfigMap block scalar -> the manifest's line and column."""
    lines = _source_lines(Path(f.loc.file))
    start = f.loc.line + 1  # `key: |` : the content starts on the next line
    indent = _indent(lines[start - 1]) if 0 < start <= len(lines) else 0
    return Loc(f.loc.file, start + line - 1, indent + column)


def _config_key_loc(f: MountedFile, key: str) -> Loc | None:
    """Where a top-level key of a mounted YAML file is written in the manifest."""
    loaded = parse_yaml_bytes(f.content.encode(), Path(f.path))
    data = loaded.documents[0].data if loaded.documents else None
    if not isinstance(data, SrcMap):
        return None
    for k in data:
        if str(k) == key or str(k).replace("_", "-") == key.replace("_", "-"):
            kl = data.key_loc(k)
            return _content_loc(f, kl.line, kl.column)
    return None


def flag_loc(job: Job, flag: str) -> Loc | None:
    """Where `flag` is written: on the command line, or as a key of a config file it came from."""
    for tok in job.argv:
        if tok.value == flag or tok.value.startswith(flag + "="):
            return physical_loc(tok.loc, flag)
    for f in job.files:
        loc = _config_key_loc(f, flag.lstrip("-"))
        if loc is not None:
            return loc
    return None


def _finding(job: Job, loc: Loc, message: str, hint: str) -> Finding:
    return Finding(
        CHECK_ID,
        Severity.ERROR,
        display_path(loc.file),
        max(loc.line, 1),
        max(loc.column, 1),
        message,
        hint,
        job.recipe.id,
    )


def findings_for(job: Job, result: ParseResult) -> list[Finding]:
    """Map one parse result to findings at the flag's file:line, with the parser's own message."""
    if result.ok or result.unavailable or result.kind in ("driver", "platform", "not_parsed"):
        return []  # platform: the CPU stand-in for the GPU refused; check() notes it
    program = job.module.value
    hint = (
        f"{program} of Dynamo {job.release} rejects this command line ({result.env}; parse only, "
        f"raised at {result.where or 'argument parsing'})"
    )
    error = (result.error or "").strip()
    out: list[Finding] = []
    for flag in result.unrecognized:
        loc = flag_loc(job, flag)
        out.append(_finding(job, loc or physical_loc(job.module.loc, program), f"{flag}: {error}", hint))
    if out:
        return out
    named = re.search(r"argument (--[A-Za-z0-9][\w.-]*)", error)
    candidates = ([named.group(1)] if named else []) + _FLAG_IN_TEXT.findall(error)
    for flag in candidates:
        loc = flag_loc(job, flag)
        if loc is not None:
            return [_finding(job, loc, f"{flag}: {error}", hint)]
    tok = crosscheck.flag_named_by(job, error)
    if tok is not None:
        flag = tok.value.split("=", 1)[0]
        return [_finding(job, physical_loc(tok.at, flag), f"{flag}: {error}", hint)]
    return [_finding(job, physical_loc(job.module.loc, program), f"{program}: {error}", hint)]


def engine_args_findings(job: Job) -> tuple[list[Finding], list[str]]:
    """TRT-LLM `--extra-engine-args` keys checked against the recorded LlmArgs surface: (findings, notes)."""
    if job.parser != "trtllm" or not job.files:
        return [], []
    version = engine_version(job.recipe, job.release, "trtllm") or "?"
    surface = trtllm.load_surface(version)
    if surface is None:
        return [], [
            f"TensorRT-LLM {version} LlmArgs surface not recorded: --extra-engine-args keys not checked "
            f"(recipe-harness conformance record-trtllm)"
        ]
    out: list[Finding] = []
    for f in job.files:
        loaded = parse_yaml_bytes(f.content.encode(), Path(f.path))
        data = loaded.documents[0].data if loaded.documents else None
        for dotted, holder, cls in surface.unknown_keys(data):
            key = dotted.rsplit(".", 1)[-1]
            kl = trtllm.key_loc(holder, key, Loc(Path(f.path)))
            loc = _content_loc(f, kl.line, kl.column)
            out.append(
                _finding(
                    job,
                    loc,
                    f"--extra-engine-args {f.path}: {dotted}: Extra inputs are not permitted "
                    f"({cls} of TensorRT-LLM {version} has no field {key!r})",
                    f"recorded from {surface.label}; remove or rename the key",
                )
            )
        for path, message in trtllm.TypedModels(surface).errors(data):
            holder = data
            for key in path[:-1]:
                holder = holder.get(key) if isinstance(holder, dict) else None
            if not path or not isinstance(holder, dict):
                continue
            kl = trtllm.key_loc(holder, path[-1], Loc(Path(f.path)))
            out.append(
                _finding(
                    job,
                    _content_loc(f, kl.line, kl.column),
                    f"--extra-engine-args {f.path}: {'.'.join(path)}: {message} (pydantic validation of the "
                    f"recorded LlmArgs types of TensorRT-LLM {version})",
                    f"recorded from {surface.label}; use a value of the field's type",
                )
            )
    notes = [] if surface.tag_source else [f"TensorRT-LLM {version}: {surface.provenance_note}"]
    return out, notes


def check(jobs: list[Job], root: Path | None = None) -> list[JobOutcome]:
    """Parse the jobs and map every result to findings (engine-args keys included)."""
    out = []
    for job, result in zip(jobs, run_jobs(jobs, root)):
        found = findings_for(job, result)
        extra, notes = engine_args_findings(job)
        crossed, cross_notes = crosscheck.findings(job, result)
        notes = notes + cross_notes + _result_notes(result)
        job.notes.extend(n for n in notes if n not in job.notes)
        out.append(JobOutcome(job, result, found + extra + crossed))
    return out


def _result_notes(result: ParseResult) -> list[str]:
    """What the run substituted or could not do, said on the item: the model configs, a platform refusal."""
    notes = [f"model {m}: {how}" for m, how in sorted(result.stub_models.items())]
    if result.kind == "platform":
        notes.append(
            f"not judged: the CPU platform that stands in for the GPU refused ({result.where}): {result.error}"
        )
    elif result.ok and result.summary and result.summary.get("engine_config"):
        notes.append(f"engine config {result.summary['engine_config']}")
    return notes


def check_recipes(recipes: Iterable[Recipe], root: Path | None = None) -> list[JobOutcome]:
    return check([j for r in recipes for j in jobs_for(r)], root)


def failure_text(outcome: JobOutcome) -> str:
    """What a failing item prints: one line per finding, then the notes."""
    lines = [f.format() for f in outcome.findings]
    if outcome.result.kind == "driver":
        lines.append(f"{outcome.job.id}: {outcome.result.error}")
    lines += [f"note: {n}" for n in outcome.job.notes]
    return "\n".join(lines)


def surface_header_lines(releases: list[str], recipes: Iterable[Recipe]) -> list[str]:
    """The run header's account of the recorded surfaces: per release, whether the static tier reads its flags
    with the release's parsers, and per TensorRT-LLM version whether its LlmArgs came from the release's tag."""
    out = []
    for release in releases:
        surface = load_surface(release)
        how = (
            f"recorded from the real parsers ({', '.join(sorted(surface.entry_points))})"
            if surface
            else "none recorded: the static tier reads flags generically"
        )
        out.append(f"recipe-harness: Dynamo {release}: flag surface {how}")
    seen = set()
    for recipe in recipes:
        version = engine_version(recipe, recipe.release, "trtllm") if recipe.framework == "trtllm" else None
        if not version or version in seen:
            continue
        seen.add(version)
        trt = trtllm.load_surface(version)
        if trt is None:
            out.append(
                f"recipe-harness: TensorRT-LLM {version}: no LlmArgs surface recorded (engine YAML keys unchecked)"
            )
        elif not trt.tag_source:
            out.append(f"recipe-harness: TensorRT-LLM {version}: not from the v{version} tag: {trt.provenance_note}")
    return out
