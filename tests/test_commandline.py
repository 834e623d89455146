"""One reading of a service's command line (`Service.flags`, `Service.router_mode`), shared by
the checks, the topology, the sim plan and the k8s mocker."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.analysis.topology import topology_of
from harness.recipe.service import DEFAULT_ROUTER_MODE, FRONTEND_BOOLEAN_FLAGS, Deployment
from harness.recipe.yamlsrc import load_yaml_file
from harness.run.k8s.mocker import MockerModel, mocker_args

DGD = """
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata: {name: demo}
spec:
  backendFramework: vllm
  services:
    Frontend:
      componentType: frontend
      extraPodSpec:
        mainContainer:
          env: [{name: MODE, value: kv}]
          command: [python3, -m, dynamo.frontend]
          args: [--load-aware, --router-mode, $(MODE)]
    VllmWorker:
      componentType: worker
      resources: {limits: {gpu: "4"}}
      extraPodSpec:
        mainContainer:
          env: [{name: MODEL, value: Qwen/Qwen3-32B}]
          command: [/bin/sh, -c]
          args:
            - |
              python3 -m dynamo.vllm --model $MODEL \\
                --enable-expert-parallel -tp 4 \\
                --block-size 32
"""


def load(tmp_path: Path, text: str = DGD) -> tuple[Deployment, Path]:
    path = tmp_path / "deploy.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    loaded = load_yaml_file(path)
    assert not loaded.problems, loaded.problems
    return Deployment(next(d for d in loaded.documents if d.kind == "DynamoGraphDeployment")), path


def line(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def test_flags_keep_values_positions_and_boolean_flags(tmp_path):
    dep, path = load(tmp_path)
    worker = dep.workers[0]
    assert worker.module.value == "dynamo.vllm"
    flags = worker.flags
    assert flags.value("--enable-expert-parallel") == "true" and flags.get("--enable-expert-parallel").bare
    assert flags.value("-tp") == "4"  # a boolean flag does not swallow the next flag
    model = flags.get("--model")
    assert model.value.value == "Qwen/Qwen3-32B"
    assert model.value.loc.line == line(path, "value: Qwen/Qwen3-32B")  # where to edit: the env value
    assert model.value.at.line == line(path, "--model $MODEL")  # where the word is written


def test_topology_and_mocker_read_the_same_flags(tmp_path):
    dep, _ = load(tmp_path)
    worker = dep.workers[0]
    topo = topology_of(worker, "vllm")
    assert topo.tp == 4 and topo.ep == 4 and topo.block_size == 32
    args = mocker_args(worker, MockerModel("Qwen/Qwen3-32B", "Qwen/Qwen3-32B", "1.4.2"), "vllm")
    assert args[args.index("--block-size") + 1] == "32"


def test_router_mode_load_aware_wins_as_in_the_frontend(tmp_path):
    dep, path = load(tmp_path)
    mode = dep.frontends[0].router_mode
    assert (mode.value, mode.source) == ("kv", "--load-aware")
    assert mode.loc.line == line(path, "args: [--load-aware")


@pytest.mark.parametrize(
    "args,env,expected",
    [
        ("[--router-mode, random]", "[]", ("random", "--router-mode")),
        ("[]", "[{name: DYN_ROUTER_MODE, value: kv}]", ("kv", "DYN_ROUTER_MODE")),
        ("[]", "[{name: DYN_ROUTER_LOAD_AWARE, value: 'true'}]", ("kv", "DYN_ROUTER_LOAD_AWARE")),
        ("[--no-load-aware]", "[{name: DYN_ROUTER_LOAD_AWARE, value: 'true'}]", (DEFAULT_ROUTER_MODE, "default")),
        ("[]", "[]", (DEFAULT_ROUTER_MODE, "default")),
    ],
)
def test_router_mode_sources(tmp_path, args, env, expected):
    text = DGD.replace("[--load-aware, --router-mode, $(MODE)]", args).replace("[{name: MODE, value: kv}]", env)
    dep, _ = load(tmp_path, text)
    mode = dep.frontends[0].router_mode
    assert (mode.value, mode.source) == expected
    assert mode.is_default == (expected[1] == "default")


def test_frontend_boolean_flags_match_the_installed_frontend():
    pytest.importorskip("dynamo.frontend.frontend_args", reason="ai-dynamo not installed (pip install -e '.[sim]')")
    from harness.run.sim.plan import installed_frontend_cli

    assert installed_frontend_cli().no_value == FRONTEND_BOOLEAN_FLAGS
