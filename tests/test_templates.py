"""Templates and placeholders: an envsubst template is checked rendered with the recipe's own sample values,
a template without them (and a placeholder the README says to replace) is one warning, never an error.

Fixtures (tests/fixtures/templates/): `envsubst/` renders `deploy/agg.yaml` from `run.sh` with
`hw/lab.env`; `placeholders/` has `namespace: <your-namespace>`, documented in its README."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.recipe.findings import Severity
from harness.recipe.templates import placeholders
from harness.run.static import context_for, make_selection, run_static

FIXTURES = Path(__file__).parent / "fixtures" / "templates"
ENVSUBST = FIXTURES / "envsubst" / "recipes"
PLACEHOLDERS = FIXTURES / "placeholders" / "recipes"
TEMPLATE = "demo/deploy/agg.yaml"


def _copy(tmp_path: Path, tree: Path) -> Path:
    root = tmp_path / "recipes"
    shutil.copytree(tree, root)
    return root


def _check(root: Path):
    selection = make_selection(root)
    return selection, run_static(selection, context_for(selection))


def _line_of(path: Path, needle: str) -> list[int]:
    return [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]


def test_an_envsubst_template_is_checked_rendered_with_the_documented_values():
    selection, report = _check(ENVSUBST)
    assert report.findings == [], "\n".join(f.format() for f in report.findings)
    (recipe,) = selection.all
    worker = next(s for s in recipe.deployment.services if s.name == "Worker")
    assert worker.main.image == "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1"  # from hw/lab.env
    assert worker.data["podTemplate"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    # the SHELL-FORMAT names IMAGE and NODE_SELECTOR only: the worker's own shell variable is left as written
    assert '"${MODEL_NAME}"' in worker.data["podTemplate"]["spec"]["containers"][0]["args"][0]


def test_a_defect_in_a_sample_value_is_reported_at_the_template_line(tmp_path):
    root = _copy(tmp_path, ENVSUBST)
    env = root / "demo" / "hw" / "lab.env"
    env.write_text(env.read_text().replace("vllm-runtime:1.6.1", "vllm-runtime:latest"))
    _, report = _check(root)
    hits = [f for f in report.findings if f.check_id == "image-reference-pinned"]
    template = root / TEMPLATE
    assert sorted((f.file, f.line) for f in hits) == [(str(template), n) for n in _line_of(template, "image: ${IMAGE}")]
    assert all("'latest'" in f.message for f in hits)


def test_the_callers_default_hardware_is_the_sample(tmp_path):
    """run.sh defaults to HW="lab": hw/lab.env is the sample even beside an env file that sorts first."""
    root = _copy(tmp_path, ENVSUBST)
    other = root / "demo" / "hw" / "a100.env"
    other.write_text(
        (root / "demo" / "hw" / "lab.env").read_text().replace("vllm-runtime:1.6.1", "vllm-runtime:latest")
    )
    _, report = _check(root)
    assert report.findings == [], "\n".join(f.format() for f in report.findings)
    (root / "demo" / "run.sh").write_text((root / "demo" / "run.sh").read_text().replace('HW="lab"', 'HW="a100"'))
    _, report = _check(root)
    assert {f.check_id for f in report.findings} == {"image-reference-pinned"}


def test_a_template_without_sample_values_is_one_warning_and_no_error(tmp_path):
    root = _copy(tmp_path, ENVSUBST)
    (root / "demo" / "hw" / "lab.env").unlink()
    _, report = _check(root)
    assert [f.severity for f in report.findings] == [Severity.WARNING], "\n".join(f.format() for f in report.findings)
    (warning,) = report.findings
    assert warning.check_id == "template-placeholders"
    assert "'${NODE_SELECTOR}'" in warning.message and "run.sh:" in warning.message
    # the images' tokens are image-reference-pinned's to name: this check skips image lines, and no error is left
    assert "${IMAGE}" not in warning.message


def test_a_documented_placeholder_is_one_warning_wherever_it_is():
    selection, report = _check(PLACEHOLDERS)
    assert [(f.check_id, f.severity) for f in report.findings] == [("template-placeholders", Severity.WARNING)]
    (recipe,) = selection.all
    deploy = PLACEHOLDERS / "demo" / "vllm" / "agg" / "deploy.yaml"
    assert [(p.token, p.loc.line, p.documented.line) for p in placeholders(recipe)] == [
        ("<your-namespace>", _line_of(deploy, "<your-namespace>")[0], 3)
    ]


def test_an_undocumented_placeholder_is_judged_as_written(tmp_path):
    """Nothing tells the user to replace it: `kubectl apply -f deploy.yaml` sends it as is, so the errors
    about that value stay (no-hard-coded-namespace, and the schema's DNS-1123 pattern)."""
    root = _copy(tmp_path, PLACEHOLDERS)
    (root / "demo" / "vllm" / "agg" / "README.md").write_text("# demo, vLLM aggregated\n")
    _, report = _check(root)
    assert {f.check_id for f in report.findings} == {"no-hard-coded-namespace", "schema-valid"}
    assert all(f.severity is Severity.ERROR for f in report.findings)
