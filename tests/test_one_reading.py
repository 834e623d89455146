"""One reading of a command line: the forms users write give the same answer to every consumer.

The perf Job's `aiperf profile` call is read by the static checks (`Workloads.aiperf`, the `perf-*`
checks), the sim's perf step and the gpu stage's local mode (`analysis.benchmark.find_invocation`,
`run.k8s.facts.local_aiperf_args`); a worker's `python -m dynamo.X` call by the model
(`Service.flags`, read by the checks, the sim plan and the deployer) and the conformance client
(`run.conformance.client.jobs_for`, through the operator's rendering). Each form below must reach
all of them with the same words.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.benchmark import find_invocation
from harness.checks import CheckContext, all_checks, run_check
from harness.recipe.model import Recipe
from harness.run.conformance.client import jobs_for
from harness.run.k8s.facts import local_aiperf_args

MODEL = "Qwen/Qwen3-0.6B"
URL = "http://tiny-frontend:8000"

# The perf container's command/args (YAML, indented under `- name: perf`) in the forms users write.
# Each runs `aiperf profile` with model MODEL, url URL, concurrency 8.
PERF_FORMS = {
    "exec-form-kubelet-vars": """
          command: [aiperf, profile]
          args: [--model, $(TARGET_MODEL), --url, $(ENDPOINT_URL), --concurrency, "8", --streaming]
""",
    "sh-c-one-line": """
          command: [sh, -c]
          args: ["aiperf profile --model $TARGET_MODEL --url ${ENDPOINT_URL} --concurrency 8 --streaming"]
""",
    "bash-lc-block-and-list": """
          command: [/bin/bash, -lc]
          args:
            - |
              set -euo pipefail
              pip install "aiperf==0.13.0" && aiperf --version
              aiperf profile --model "$TARGET_MODEL" \\
                --url "$ENDPOINT_URL" --concurrency 8 --streaming
""",
    "folded-yaml": """
          command: [bash, -c]
          args:
            - >-
              pip install "aiperf==0.13.0" &&
              aiperf profile --model "$TARGET_MODEL" --url "$ENDPOINT_URL"
              --concurrency 8 --streaming
""",
    "nested-sh-c": """
          command: [/bin/bash, -c]
          args:
            - |
              set -e
              pip install "aiperf==0.13.0"
              sh -c 'aiperf profile --model "$TARGET_MODEL" --url "$ENDPOINT_URL" --concurrency 8 --streaming'
""",
    "script-variables": """
          command: [sh, -ec]
          args:
            - |
              URL="$ENDPOINT_URL"
              export CONC=8
              aiperf profile --model "$TARGET_MODEL" --url "$URL" --concurrency "$CONC" --streaming
""",
    "env-exec-warmup-first": """
          command: [/usr/bin/env, bash, -c]
          args:
            - |
              aiperf profile --model "$TARGET_MODEL" --url "$ENDPOINT_URL" --concurrency 1 --artifact-dir /tmp/warmup
              exec aiperf profile --model "$TARGET_MODEL" --url "$ENDPOINT_URL" --concurrency 8 --streaming
""",
}

# The worker's main container in the forms users write; each runs `python3 -m dynamo.vllm --model MODEL
# --served-model-name tiny --max-model-len 4096`.
WORKER_FORMS = {
    "exec-form-kubelet-vars": """
              command: [python3, -m, dynamo.vllm]
              args: [--model, $(MODEL), --served-model-name, tiny, --max-model-len, "4096"]
""",
    "sh-c-env-var": """
              command: [sh, -c]
              args: ["python3 -m dynamo.vllm --model $MODEL --served-model-name tiny --max-model-len 4096"]
""",
    "bash-lc-list-exec": """
              command: [bash, -lc]
              args:
                - |
                  nvidia-smi && echo starting
                  exec python3 -m dynamo.vllm --model "${MODEL}" \\
                    --served-model-name tiny --max-model-len 4096
""",
    "folded-yaml": """
              command: [/bin/sh, -c]
              args:
                - >-
                  python3 -m dynamo.vllm
                  --model "$MODEL"
                  --served-model-name tiny
                  --max-model-len 4096
""",
}

DEPLOY = """apiVersion: nvidia.com/v1beta1
kind: DynamoGraphDeployment
metadata:
  name: tiny
spec:
  backendFramework: vllm
  components:
    - name: Frontend
      componentType: frontend
      replicas: 1
      podTemplate:
        spec:
          containers:
            - name: main
              image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1
              command: [python3, -m, dynamo.frontend]
    - name: VllmWorker
      componentType: worker
      replicas: 1
      podTemplate:
        spec:
          containers:
            - name: main
              image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1
              env:
                - name: MODEL
                  value: {model}
{worker}"""

PERF = """apiVersion: batch/v1
kind: Job
metadata:
  name: tiny-perf
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: perf
          image: docker.io/library/python:3.12.11-slim
          env:
            - name: TARGET_MODEL
              value: {model}
            - name: ENDPOINT_URL
              value: {url}
{perf}"""


def _recipe(tmp_path: Path, worker: str = WORKER_FORMS["exec-form-kubelet-vars"], perf: str = "") -> Recipe:
    root = tmp_path / "recipes"
    path = root / "tiny" / "vllm" / "agg"
    path.mkdir(parents=True)
    (path / "deploy.yaml").write_text(DEPLOY.format(model=MODEL, worker=worker.lstrip("\n")))
    perf = perf or PERF_FORMS["exec-form-kubelet-vars"]
    (path / "perf.yaml").write_text(PERF.format(model=MODEL, url=URL, perf=perf.lstrip("\n")))
    return Recipe(path, root)


def _check(recipe: Recipe, check_id: str) -> list[str]:
    chk = next(c for c in all_checks() if c.id == check_id)
    return [f.message for f in run_check(chk, recipe, CheckContext(recipe.root, catalogue=False))]


@pytest.mark.parametrize("form", sorted(PERF_FORMS))
def test_every_consumer_reads_the_same_aiperf_call(form, tmp_path):
    recipe = _recipe(tmp_path, perf=PERF_FORMS[form])
    # the static checks
    found = recipe.workloads.aiperf()
    assert found is not None, "Workloads.aiperf() found no call"
    flags = found[2]
    assert _check(recipe, "perf-runs-aiperf") == []
    assert _check(recipe, "perf-streaming") == []
    # the sim's perf step and the gpu stage's local mode
    inv = find_invocation(recipe)
    assert inv.model == MODEL == flags.value("--model")
    assert inv.get("--url") == URL
    assert inv.get("--concurrency") == "8"
    assert inv.has("--streaming") and "--streaming" in flags
    local = local_aiperf_args(inv.options, "http://127.0.0.1:8000", Path("/out"), None)
    assert local[local.index("--model") + 1] == MODEL
    assert local[local.index("--concurrency") + 1] == "8"


def test_the_static_checks_and_the_sim_reject_the_same_perf_job(tmp_path):
    recipe = _recipe(tmp_path, perf='          command: [sh, -c]\n          args: ["echo no benchmark here"]\n')
    assert recipe.workloads.aiperf() is None
    assert _check(recipe, "perf-runs-aiperf")
    from harness.analysis.benchmark import PerfConfigError

    with pytest.raises(PerfConfigError, match="no container of the perf Job runs `aiperf profile`"):
        find_invocation(recipe)


@pytest.mark.parametrize("form", sorted(WORKER_FORMS))
def test_every_consumer_reads_the_same_dynamo_call(form, tmp_path):
    recipe = _recipe(tmp_path, worker=WORKER_FORMS[form])
    worker = next(s for s in recipe.deployment.services if s.name == "VllmWorker")
    assert worker.engine == "vllm"
    assert worker.flags.value("--model") == MODEL
    assert worker.flags.value("--max-model-len") == "4096"
    model_args = [t.value for t in worker.main.dynamo_invocation()[1]]
    assert model_args == ["--model", MODEL, "--served-model-name", "tiny", "--max-model-len", "4096"]
    job = next(j for j in jobs_for(recipe) if j.service == "VllmWorker")
    assert job.parser == "vllm" and job.release == recipe.release == "1.6.1"
    assert [t.value for t in job.argv] == model_args


def test_release_is_the_metadata_then_the_images(tmp_path):
    recipe = _recipe(tmp_path)
    assert recipe.release == "1.6.1"  # no recipe.yaml: the Dynamo images' release
    (recipe.path / "recipe.yaml").write_text("versions:\n  dynamo: 1.4.0\n")
    assert Recipe(recipe.path, recipe.root).release == "1.4.0"  # the author's statement comes first
    (recipe.path / "recipe.yaml").unlink()
    text = (recipe.path / "deploy.yaml").read_text()
    (recipe.path / "deploy.yaml").write_text(text.replace("nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1", "my.reg/v:x"))
    assert Recipe(recipe.path, recipe.root).release == ""  # neither says
