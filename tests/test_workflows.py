"""The CI files: valid GitHub workflows (offline schema), least privilege, pinned actions, the
nightly's matrix and report helpers, and the pre-commit hooks."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.ci import aggregate as ci_aggregate
from harness.ci import matrix as ci_matrix
from harness.ci import pr as ci_pr
from harness.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d+(\.\d+)*\s*$")
WRITE_SCOPES_ALLOWED = {("nightly.yml", "report"): {"issues"}}


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if True in data:  # PyYAML reads the bare key `on` as a YAML 1.1 boolean
        data["on"] = data.pop(True)
    return data


def workflow(name: str) -> dict:
    return load(ROOT / ".github" / "workflows" / name)


def run_scripts(wf: dict) -> str:
    return "\n".join(step.get("run", "") for job in wf["jobs"].values() for step in job.get("steps", []))


def test_the_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"recipes-pr.yml", "nightly.yml", "kind-mocker.yml"}


# --- the GitHub workflow schema, offline --------------------------------------------------


def vendored_workflow_schema() -> dict:
    """check-jsonschema ships SchemaStore's github-workflows schema inside the package."""
    try:
        import check_jsonschema.builtin_schemas.vendor as vendor
    except ImportError:
        pytest.skip("check-jsonschema is not installed: pip install -e '.[dev]' to validate workflows offline")
    return json.loads(importlib.resources.files(vendor).joinpath("github-workflows.json").read_text())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(path: Path):
    import jsonschema

    schema = vendored_workflow_schema()
    ruamel = pytest.importorskip("ruamel.yaml")  # check-jsonschema's own YAML 1.2 loader: `on` stays a key
    # pure: ruamel's C loader (ruamel.yaml.clib) leaves tags unresolved ('None') once another test in the process
    # has used it differently, which made this test depend on the order of the test files.
    data = ruamel.YAML(typ="safe", pure=True).load(path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, f"{path.name} is not a valid GitHub workflow:\n" + "\n".join(errors)


def test_check_jsonschema_cli_validates_offline():
    """The same check as a contributor runs it: `check-jsonschema --builtin-schema vendor.github-workflows`."""
    vendored_workflow_schema()
    out = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# --- every workflow: pinned actions, least privilege ----------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^\s*(-\s+)?uses:", line) and "uses: ./" not in line:
            assert PINNED.match(line), (
                f"{path.name}:{n}: pin the action to a 40-hex commit SHA with a '# vX.Y.Z' comment: {line.strip()}"
            )


def test_one_sha_per_action_across_workflows():
    shas: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            m = PINNED.match(line)
            if m:
                shas.setdefault(m.group(1), set()).add(m.group(2))
    assert shas and all(len(s) == 1 for s in shas.values()), shas


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_read_only_by_default_and_writes_only_where_needed(path: Path):
    wf = load(path)
    assert wf.get("permissions") == {"contents": "read"}, f"{path.name}: set top-level `permissions: contents: read`"
    for job_id, job in wf["jobs"].items():
        perms = job.get("permissions", {})
        assert isinstance(perms, dict), f"{path.name}:{job_id}: list permissions scope by scope"
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= WRITE_SCOPES_ALLOWED.get((path.name, job_id), set()), f"{path.name}:{job_id} writes {writes}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_has_a_timeout(path: Path):
    for job_id, job in load(path)["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"{path.name}:{job_id} has no timeout-minutes"


def test_untrusted_inputs_reach_scripts_only_through_env():
    """`${{ inputs.x }}` or PR titles pasted into a script are a shell injection."""
    for path in WORKFLOWS:
        for script in run_scripts(load(path)).split("\n"):
            assert not re.search(r"\$\{\{\s*(inputs|github\.event|github\.head_ref)", script), (
                f"{path.name}: {script.strip()}"
            )


# --- the PR workflow -------------------------------------------------------------------------


def test_pr_workflow_triggers_on_what_it_gates():
    paths = set(workflow("recipes-pr.yml")["on"]["pull_request"]["paths"])
    assert paths == {"recipes/**", "schemas/**", "harness/**", "tests/**", "pyproject.toml", ".github/workflows/**"}


def test_pr_workflow_cancels_superseded_runs_per_pr():
    conc = workflow("recipes-pr.yml")["concurrency"]
    assert conc["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in conc["group"]


def test_pr_workflow_runs_the_changed_recipes_only():
    wf = workflow("recipes-pr.yml")
    steps = wf["jobs"]["recipes"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # the merge base needs history
    scripts = run_scripts(wf)
    assert "git merge-base" in scripts
    assert re.search(r"pytest -m static --changed-since \"\$BASE\".*\n?.*--junitxml=.*--findings-json=", scripts)
    assert "pytest -m sim --changed-since" in scripts
    assert "harness.ci.pr kubeconform --changed-since" in scripts
    assert "sha256sum --check" in scripts and re.fullmatch(r"[0-9a-f]{64}", wf["env"]["KUBECONFORM_SHA256"])
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.11" and setup["with"]["cache"] == "pip"
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and all(s["if"] == "${{ always() }}" for s in uploads)


# --- the nightly -----------------------------------------------------------------------------


def test_nightly_is_scheduled_and_manual_with_inputs():
    on = workflow("nightly.yml")["on"]
    assert on["schedule"][0]["cron"]
    assert {"recipes", "repeats"} <= set(on["workflow_dispatch"]["inputs"])


def test_nightly_jobs_chain_matrix_gpu_report():
    jobs = workflow("nightly.yml")["jobs"]
    gpu, report = jobs["gpu"], jobs["report"]
    assert gpu["needs"] == "matrix" and gpu["strategy"]["fail-fast"] is False
    assert "fromJSON(needs.matrix.outputs.matrix)" in gpu["strategy"]["matrix"]
    assert gpu["runs-on"] == "${{ matrix.runs-on }}" and gpu["timeout-minutes"] > 0
    assert 'pytest -m gpu --recipe "$RECIPE" --repeats "$REPEATS"' in run_scripts({"jobs": {"gpu": gpu}})
    assert set(report["needs"]) == {"matrix", "gpu"} and "always()" in report["if"]
    assert report["permissions"] == {"contents": "read", "actions": "read", "issues": "write"}
    script = run_scripts({"jobs": {"report": report}})
    assert "recipe-harness report --aggregate nightly --nightly" in script
    assert "harness.ci.aggregate merge-history" in script and "harness.ci.aggregate missing" in script
    assert "nightly-regression" in str(report) and "gh issue list --label" in script and "gh issue create" in script


def test_nightly_history_travels_from_night_to_night():
    jobs = workflow("nightly.yml")["jobs"]
    restores = [
        s
        for j in ("gpu", "report")
        for s in jobs[j]["steps"]
        if s.get("uses", "").startswith("actions/download-artifact@") and s["with"].get("name") == "nightly-history"
    ]
    assert len(restores) == 2 and all(
        s["with"]["run-id"] == "${{ needs.matrix.outputs.history-run }}" for s in restores
    )
    uploads = [s for s in jobs["report"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert any(s["with"]["name"] == "nightly-history" and s["if"] == "${{ always() }}" for s in uploads)
    gpu_upload = next(s for s in jobs["gpu"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert "reports/history/" in gpu_upload["with"]["path"] and gpu_upload["if"] == "${{ always() }}"


FIXTURE_LIST = [
    {
        "id": "qwen3-32b/vllm/agg-round-robin",
        "model": "qwen3-32b",
        "gpu": "H200",
        "gpus": 16,
        "nodes": 2,
        "labels": ["h200-8gpu"],
        "status": "stable",
    },
    {
        "id": "gpt-oss-120b/trtllm/agg",
        "model": "gpt-oss-120b",
        "gpu": "GB200",
        "gpus": 4,
        "nodes": 1,
        "labels": [],
        "status": "experimental",
    },
    {
        "id": "llama-3-70b/vllm/agg",
        "model": "llama-3-70b",
        "gpu": "H100",
        "gpus": 4,
        "nodes": 1,
        "labels": ["h100", "h200"],
        "status": "stable",
    },
    {"id": "old/vllm/agg", "model": "old", "gpu": "A100", "gpus": 1, "nodes": 1, "labels": [], "status": "deprecated"},
]


def test_matrix_entries_carry_runner_labels():
    include = ci_matrix.include_entries(FIXTURE_LIST, repeats=3)
    assert include == [
        {
            "recipe": "qwen3-32b/vllm/agg-round-robin",
            "slug": "qwen3-32b__vllm__agg-round-robin",
            "runs-on": ["self-hosted", "linux", "h200-8gpu"],
            "gpu": "H200",
            "gpus": 16,
            "nodes": 2,
            "repeats": 3,
        },
        {
            "recipe": "gpt-oss-120b/trtllm/agg",
            "slug": "gpt-oss-120b__trtllm__agg",
            "runs-on": ["self-hosted", "linux", "gb200"],
            "gpu": "GB200",
            "gpus": 4,
            "nodes": 1,
            "repeats": 3,
        },
        {
            "recipe": "llama-3-70b/vllm/agg",
            "slug": "llama-3-70b__vllm__agg",
            "runs-on": ["self-hosted", "linux", "h100", "h200"],
            "gpu": "H100",
            "gpus": 4,
            "nodes": 1,
            "repeats": 3,
        },
    ]  # the deprecated recipe gets no GPU time


def test_matrix_filters_by_hardware_label_or_gpu_type():
    def ids(*hw: str) -> list[str]:
        return [e["recipe"] for e in ci_matrix.include_entries(FIXTURE_LIST, ci_matrix.split_words(hw))]

    assert ids("h200") == ["qwen3-32b/vllm/agg-round-robin", "llama-3-70b/vllm/agg"]  # GPU type, and a label
    assert ids("H200-8GPU") == ["qwen3-32b/vllm/agg-round-robin"]
    assert ids("gb200, b200") == ["gpt-oss-120b/trtllm/agg"]
    assert ids("a100") == []


def test_matrix_cli_writes_github_outputs(tmp_path, capsys):
    listing, outputs = tmp_path / "recipes.json", tmp_path / "github_output"
    listing.write_text(json.dumps(FIXTURE_LIST))
    assert ci_matrix.main([str(listing), "--hardware", "gb200", "--repeats", "2", "--github-output", str(outputs)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["include"][0]["recipe"] == "gpt-oss-120b/trtllm/agg" and printed["include"][0]["repeats"] == 2
    lines = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert json.loads(lines["matrix"]) == printed and lines["count"] == "1"
    with pytest.raises(SystemExit):
        ci_matrix.main([str(listing), "--repeats", "0"])


def test_matrix_from_the_real_list_command(tmp_path, capsys):
    """`recipe-harness list --json` -> ci_matrix, on a small tree with hardware labels."""
    from harness.cli import main

    for rid, hw in (("m1/vllm/agg", "gpu: H200\n  labels: [h200-8gpu]"), ("m2/sglang/agg", "gpu: B200")):
        d = tmp_path / "recipes" / rid
        d.mkdir(parents=True)
        (d / "recipe.yaml").write_text(f"schemaVersion: 1\nhardware:\n  {hw}\ngpus: 8\nnodes: 1\nstatus: stable\n")
    assert main(["list", "--json", "--recipes-dir", str(tmp_path / "recipes")]) == 0
    listing = json.loads(capsys.readouterr().out)
    include = ci_matrix.include_entries(listing, ["h200", "b200"])
    assert [(e["recipe"], e["runs-on"][-1], e["gpus"]) for e in include] == [
        ("m1/vllm/agg", "h200-8gpu", 8),
        ("m2/sglang/agg", "b200", 8),
    ]


# --- the nightly report ----------------------------------------------------------------------


def test_merge_history_keeps_each_files_longest_copy(tmp_path):
    """Every GPU job uploads the whole history; only its own recipe's file grew."""
    prev = ['{"runId": "n1"}', '{"runId": "n2"}']
    into = tmp_path / "reports" / "history"
    for job, grown in (("a", "m/vllm/a"), ("b", "m/vllm/b")):
        for rid in ("m/vllm/a", "m/vllm/b"):
            lines = prev + ([f'{{"runId": "n3-{job}"}}'] if rid == grown else [])
            path = tmp_path / "nightly" / f"nightly-{job}" / "history" / "gpu" / "h200" / f"{rid}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
    (into / "gpu" / "h200" / "m" / "vllm").mkdir(parents=True)
    (into / "gpu" / "h200" / "m" / "vllm" / "a.jsonl").write_text(prev[0] + "\n")  # the restored, older history
    (into / "sim").mkdir()
    (into / "sim" / "keep.jsonl").write_text("{}\n")  # not in any job's copy: stays
    warnings = ci_aggregate.merge_histories(sorted((tmp_path / "nightly").glob("*/history")), into)
    assert not warnings
    assert (into / "gpu/h200/m/vllm/a.jsonl").read_text().splitlines()[-1] == '{"runId": "n3-a"}'
    assert (into / "gpu/h200/m/vllm/b.jsonl").read_text().splitlines()[-1] == '{"runId": "n3-b"}'
    assert (into / "sim/keep.jsonl").exists()
    (tmp_path / "nightly" / "nightly-b" / "history" / "gpu/h200/m/vllm/a.jsonl").write_text('{"runId": "other"}\n')
    assert any(
        "diverges" in w for w in ci_aggregate.merge_histories([tmp_path / "nightly" / "nightly-b" / "history"], into)
    )


def test_missing_lists_matrix_recipes_without_a_summary(tmp_path, capsys):
    run = tmp_path / "nightly" / "nightly-a" / "runs" / "x"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps({"runId": "x", "recipes": [{"recipe": "m/vllm/a", "verdict": "pass"}]})
    )
    (tmp_path / "nightly" / "broken").mkdir()
    (tmp_path / "nightly" / "broken" / "summary.json").write_text("{nope")
    matrix = json.dumps({"include": [{"recipe": "m/vllm/a"}, {"recipe": "m/vllm/b"}]})
    gh = tmp_path / "github_output"
    assert (
        ci_aggregate.main(["missing", str(tmp_path / "nightly"), "--matrix", matrix, "--github-output", str(gh)]) == 0
    )
    out = capsys.readouterr().out
    assert "- `m/vllm/b`" in out and "m/vllm/a" not in out and gh.read_text() == "missing=1\n"
    assert ci_aggregate.main(["missing", str(tmp_path / "nightly"), "--matrix", "[]"]) == 2
    assert ci_aggregate.missing_markdown([]) == ""


# --- PR helpers --------------------------------------------------------------------------------


def test_static_summary_from_findings_json():
    report = {
        "recipes": ["m/vllm/agg"],
        "summary": {"errors": 1, "warnings": 0},
        "findings": [
            {
                "check_id": "image-tag-pinned",
                "severity": "error",
                "file": "recipes/m/vllm/agg/deploy.yaml",
                "line": 41,
                "column": 18,
                "message": "image tag 'latest' | not pinned",
                "hint": "pin a release tag",
            }
        ],
    }
    md = ci_pr.findings_markdown(report)
    assert md.startswith("### Static checks failed: 1 recipe(s), 1 error(s)")
    assert (
        "`recipes/m/vllm/agg/deploy.yaml:41:18` | image-tag-pinned | error | image tag 'latest' \\| not pinned (hint: pin a release tag) |"
        in md
    )
    assert "No recipe is touched" in ci_pr.findings_markdown({"recipes": [], "findings": []})


def test_kubeconform_runs_over_each_manifest_once(tmp_path, monkeypatch, capsys):
    tree = tmp_path / "recipes"
    for rel in (
        "m/vllm/agg/recipe.yaml",
        "m/vllm/agg/deploy.yaml",
        "m/vllm/agg/perf.yaml",
        "m/vllm/disagg/deploy.yaml",
        "m/model-cache/model-cache.yaml",
        "m/vllm/agg/gaie/pool.yaml",
    ):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("kind: X\n")
    fake = tmp_path / "bin" / "kubeconform"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path / 'args'}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    assert ci_pr.main(["kubeconform", "--recipes-dir", str(tree)]) == 1  # kubeconform's verdict is the step's
    files = [a for a in (tmp_path / "args").read_text().splitlines() if a.endswith(".yaml")]
    assert sorted(Path(f).relative_to(tree).as_posix() for f in files) == [
        "m/model-cache/model-cache.yaml",
        "m/vllm/agg/deploy.yaml",
        "m/vllm/agg/gaie/pool.yaml",
        "m/vllm/agg/perf.yaml",
        "m/vllm/disagg/deploy.yaml",
    ]  # recipe.yaml is metadata, not a manifest; the shared model cache once
    assert ci_pr.main(["kubeconform", "--recipes-dir", str(tree), "--recipe", "zzz"]) == 2


def test_kubeconform_command_uses_our_schema_layout(tmp_path):
    cmd = ci_pr.kubeconform_command("kubeconform", [Path("a.yaml")], tmp_path)
    assert cmd[:2] == ["kubeconform", "-strict"] and cmd[-1] == "a.yaml"
    locations = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-schema-location"]
    layout = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    assert locations == ["default", f"{tmp_path}/crds/{layout}"]
    (tmp_path / "dynamo" / "1.4.0").mkdir(parents=True)
    cmd = ci_pr.kubeconform_command("kubeconform", [Path("a.yaml")], tmp_path)
    locations = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-schema-location"]
    assert locations == ["default", f"{tmp_path}/dynamo/1.4.0/{layout}", f"{tmp_path}/crds/{layout}"]


# --- pre-commit --------------------------------------------------------------------------------


def test_pre_commit_hooks_name_existing_commands():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"recipe-static", "recipe-docs"}
    scripts = _console_scripts()
    parser = build_parser()
    subcommands = set(next(a for a in parser._actions if a.dest == "command").choices)
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        assert re.search(hook["files"], "recipes/m/vllm/agg/deploy.yaml") and re.search(hook["files"], "schemas/x.json")
        assert not re.search(hook["files"], "harness/cli.py")
        program, *argv = shlex.split(hook["entry"])
        assert program in scripts, f"{hook['id']}: {program} is not a console script of this package"
        if argv[0] not in subcommands and argv[0] == "docs":
            pytest.skip("`recipe-harness docs` has not landed yet (docs issue); the hook is ready for it")
        assert argv[0] in subcommands, f"{hook['id']}: recipe-harness has no subcommand {argv[0]!r}"
        parser.parse_args(argv)  # options exist too (exits 2 if not)


def _console_scripts() -> set[str]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        pytest.skip("tomllib needs Python 3.11")
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def test_ci_runs_exactly_the_readmes_test_command():
    """The README's second command and .ci/run stay one command: a newcomer runs what CI runs."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"\*\*Install everything and pass the tests\*\*.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README has no 'Install everything and pass the tests' command"
    ci = (ROOT / ".ci" / "run").read_text()

    def command(text: str) -> str:
        return " ".join(text.replace("\\\n", " ").split())

    assert command(block.group(1)) in command(ci)
