"""The rendered pods pin the operator's multinode forms (TRT-LLM mpirun leader, sshd workers, Grove
`sh -c "exec ..."` workers, vLLM/SGLang flag injection) and the argv the engine finally receives.

Expected strings are written out by hand from the operator source (ai-dynamo/dynamo
deploy/operator/internal/dynamo/: backend_trtllm.go setupLeaderContainer / setupWorkerContainer,
backend_sglang.go getMultinodeFlags, backend_vllm.go inject*LaunchFlags, shellQuoteForBashC /
injectFlagsIntoContainerCommand, grove.go / LWS deployers), not computed with the code under test.
The shell layer is checked against the real /bin/sh and bash.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness.analysis.render import render_service, shell_quote
from harness.analysis.shell import ShellParser, Traced, kubelet_expand
from harness.recipe.service import Deployment
from harness.recipe.yamlsrc import load_yaml_file


def deployment(tmp_path: Path, framework: str, services: str) -> tuple[Deployment, Path]:
    path = tmp_path / "deploy.yaml"
    text = (
        f"apiVersion: nvidia.com/v1alpha1\nkind: DynamoGraphDeployment\nmetadata: {{name: demo}}\n"
        f"spec:\n  backendFramework: {framework}\n  services:\n"
        + textwrap.indent(textwrap.dedent(services).strip("\n"), "    ")
        + "\n"
    )
    path.write_text(text)
    loaded = load_yaml_file(path)
    assert not loaded.problems, loaded.problems
    return Deployment(next(d for d in loaded.documents if d.kind == "DynamoGraphDeployment")), path


def pods(dep: Deployment, multinode: str = "grove"):
    out = {}
    for svc in dep.services:
        for pod in render_service(svc, dep.name, dep.backend_framework, dep.spec, multinode):
            out[(svc.name, pod.role)] = pod
    return out


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


TRTLLM_DECODE = """
Decode:
  componentType: worker
  subComponentType: decode
  multinode: {nodeCount: 2}
  envs:
    - {name: MODEL_PATH, value: org/model}
  resources: {requests: {gpu: "4"}, limits: {gpu: "4"}}
  extraPodSpec:
    mainContainer:
      image: nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:1.4.0
      command: [python3, -m, dynamo.trtllm]
      args:
        - --model-path
        - "$(MODEL_PATH)"
        - --disaggregation-mode
        - decode
"""

# backend_trtllm.go setupLeaderContainer: sshSetupCommands joined with " && "
SSH_SETUP = (
    r"mkdir -p $HOME/.ssh && ls -la /ssh-pk/ && cp /ssh-pk/private.key $HOME/.ssh/id_rsa && "
    r"cp /ssh-pk/private.key.pub $HOME/.ssh/id_rsa.pub && cp /ssh-pk/private.key.pub $HOME/.ssh/authorized_keys && "
    r"chmod 600 $HOME/.ssh/id_rsa $HOME/.ssh/authorized_keys && chmod 644 $HOME/.ssh/id_rsa.pub && "
    r"printf 'Host *\nIdentityFile '$HOME'/.ssh/id_rsa\nStrictHostKeyChecking no\nPort 2222\n' > $HOME/.ssh/config"
)

# generateEnvVarFlags: sorted union of getCommonTRTLLMEnvVars and the container's env names
# (operator defaults of component_common.go / component_worker.go, the manifest's MODEL_PATH,
# and OMPI_MCA_orte_keep_fqdn_hostnames appended just before setupLeaderContainer)
ENV_FLAGS = " ".join(
    f"-x {n}"
    for n in [
        "CUDA_VISIBLE_DEVICES",
        "DYN_COMPONENT",
        "DYN_DISCOVERY_BACKEND",
        "DYN_HEALTH_CHECK_ENABLED",
        "DYN_NAMESPACE",
        "DYN_PARENT_DGD_K8S_NAME",
        "DYN_PARENT_DGD_K8S_NAMESPACE",
        "DYN_SYSTEM_ENABLED",
        "DYN_SYSTEM_PORT",
        "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS",
        "HF_DATASETS_CACHE",
        "HF_ENDPOINT",
        "HF_HOME",
        "HF_TOKEN",
        "HOME",
        "HUGGING_FACE_HUB_TOKEN",
        "LD_LIBRARY_PATH",
        "MODEL_PATH",
        "NCCL_DEBUG",
        "NCCL_IB_DISABLE",
        "NCCL_P2P_DISABLE",
        "NIXL_TELEMETRY_ENABLE",
        "NIXL_TELEMETRY_EXPORTER",
        "NIXL_TELEMETRY_PROMETHEUS_PORT",
        "OMPI_MCA_orte_keep_fqdn_hostnames",
        "PATH",
        "POD_NAME",
        "POD_NAMESPACE",
        "POD_UID",
        "PYTHONPATH",
        "TENSORRT_LLM_CACHE_DIR",
        "TOKENIZERS_PARALLELISM",
        "TRANSFORMERS_CACHE",
        "TRTLLM_USE_UCX_KVCACHE",
        "USER",
    ]
)

GROVE_HOSTS = (
    "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-decode-ldr-0.$(GROVE_HEADLESS_SERVICE),"
    "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-decode-wkr-0.$(GROVE_HEADLESS_SERVICE)"
)


def test_trtllm_leader_runs_mpirun_with_the_quoted_python_command(tmp_path):
    dep, path = deployment(tmp_path, "trtllm", TRTLLM_DECODE)
    leader = pods(dep)[("Decode", "leader")]
    mpirun = (
        'mpirun $([ "$(id -u)" = "0" ] && echo --allow-run-as-root) --oversubscribe -n 8 -H '
        + GROVE_HOSTS
        + ' --mca pml ob1 --mca plm_rsh_args "-p 2222 -o StrictHostKeyChecking=no -i $HOME/.ssh/id_rsa" '
        + ENV_FLAGS
        + r""" bash -c 'trtllm-llmapi-launch python3 -m dynamo.trtllm --model-path "\$(MODEL_PATH)" --disaggregation-mode decode'"""
    )
    assert leader.command == ["/bin/sh", "-c"]
    assert leader.args == [SSH_SETUP + " && " + mpirun]
    assert leader.pods == 1
    # the kubelet expands $(MODEL_PATH) inside the escaped quotes: bash on each rank keeps the backslash
    assert [t.value for t in leader.engine_argv] == [
        "python3",
        "-m",
        "dynamo.trtllm",
        "--model-path",
        "\\org/model",
        "--disaggregation-mode",
        "decode",
    ]
    assert leader.launcher[2] == "mpirun" and leader.launcher[-1] == "trtllm-llmapi-launch"
    assert leader.engine_argv[4].loc.line == line_of(path, '"$(MODEL_PATH)"')
    [m] = leader.mangled
    assert (m.token.value, m.written, m.received) == ("$(MODEL_PATH)", ("org/model",), ("\\org/model",))
    mounts = {m.mount_path: m for m in leader.mounts}
    assert mounts["/ssh-pk"].read_only and mounts["/dev/shm"].volume == "emptyDir medium=Memory sizeLimit=8Gi"
    assert ("OMPI_MCA_orte_keep_fqdn_hostnames", "1") in [(e.name, e.value) for e in leader.env]


def test_trtllm_lws_leader_waits_for_dns_and_resolves_worker_hosts_in_the_shell(tmp_path):
    dep, _ = deployment(tmp_path, "trtllm", TRTLLM_DECODE)
    leader = pods(dep, "lws")[("Decode", "leader")]
    script = leader.args[0]
    # LWSMultinodeDeployer.GetHostNames: workers are shell command substitutions
    assert """-H $(LWS_LEADER_ADDRESS),$(echo "$LWS_LEADER_ADDRESS" | sed 's/\\./-1\\./') --mca""" in script
    assert (
        """for worker in $(echo "$LWS_LEADER_ADDRESS" | sed 's/\\./-1\\./'); do echo "Waiting for DNS: $worker";"""
        in script
    )
    hosts = leader.launcher[leader.launcher.index("-H") + 1]
    assert hosts == "demo-decode-0.demo-decode.default,demo-decode-0-1.demo-decode.default"
    assert leader.engine_argv[4].value == "\\org/model"


def test_trtllm_worker_only_runs_sshd(tmp_path):
    dep, _ = deployment(tmp_path, "trtllm", TRTLLM_DECODE)
    worker = pods(dep)[("Decode", "worker")]
    assert worker.command == ["/bin/sh", "-c"]
    script = worker.args[0]
    assert script.startswith("mkdir -p $HOME/.ssh $HOME/.ssh/host_keys $HOME/.ssh/run && ls -la /ssh-pk/ && ")
    assert "ssh-keygen -t ed25519 -f $HOME/.ssh/host_keys/ssh_host_ed25519_key -N ''" in script
    assert script.endswith(" > $HOME/.ssh/sshd_config && /usr/sbin/sshd -D -f $HOME/.ssh/sshd_config")
    assert worker.engine_argv is None and worker.mangled == []
    assert worker.pods == 1


SGLANG_PREFILL = """
Prefill:
  componentType: worker
  subComponentType: prefill
  multinode: {nodeCount: 2}
  envs:
    - {name: MODEL_PATH, value: org/model}
  resources: {limits: {gpu: "8"}}
  extraPodSpec:
    mainContainer:
      command: [python3, -m, dynamo.sglang]
      args: [--model-path, "$(MODEL_PATH)", --tp, "16", --json-model-override-args, '{"a": "b c"}']
"""

GROVE_SGLANG_LEADER = "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-prefill-ldr-0.$(GROVE_HEADLESS_SERVICE):29500"


def test_grove_sglang_worker_is_wrapped_in_sh_c_exec_with_every_token_quoted(tmp_path):
    dep, _ = deployment(tmp_path, "sglang", SGLANG_PREFILL)
    worker = pods(dep)[("Prefill", "worker")]
    assert worker.command == ["sh", "-c"]
    assert worker.args == [
        r'exec python3 -m dynamo.sglang --model-path "\$(MODEL_PATH)" --tp 16 --json-model-override-args '
        r'"{\"a\": \"b c\"}" --dist-init-addr '
        + GROVE_SGLANG_LEADER
        + " --nnodes 2 --node-rank $((GROVE_PCLQ_POD_INDEX + 1))"
    ]
    argv = [t.value for t in worker.engine_argv]
    assert argv[:9] == [
        "python3",
        "-m",
        "dynamo.sglang",
        "--model-path",
        "\\org/model",
        "--tp",
        "16",
        "--json-model-override-args",
        '{"a": "b c"}',
    ]
    assert argv[-2:] == ["--node-rank", "1"]
    assert argv[argv.index("--dist-init-addr") + 1] == "demo-0-prefill-0-prefill-ldr-0.demo-0:29500"
    assert [m.token.value for m in worker.mangled] == ["$(MODEL_PATH)"]  # the JSON survives, the $(VAR) does not
    assert all(t.injected for t in worker.engine_argv[9:])


def test_grove_sglang_leader_gets_flags_appended_without_a_shell(tmp_path):
    dep, _ = deployment(tmp_path, "sglang", SGLANG_PREFILL)
    leader = pods(dep)[("Prefill", "leader")]
    assert leader.command == ["python3", "-m", "dynamo.sglang"]
    assert leader.args[-6:] == ["--dist-init-addr", GROVE_SGLANG_LEADER, "--nnodes", "2", "--node-rank", "0"]
    assert leader.engine_argv[4].value == "org/model" and leader.mangled == []


def test_lws_sglang_worker_needs_no_shell(tmp_path):
    dep, _ = deployment(tmp_path, "sglang", SGLANG_PREFILL)
    worker = pods(dep, "lws")[("Prefill", "worker")]
    assert worker.command == ["python3", "-m", "dynamo.sglang"]
    assert worker.args[-6:] == [
        "--dist-init-addr",
        "$(LWS_LEADER_ADDRESS):29500",
        "--nnodes",
        "2",
        "--node-rank",
        "$(LWS_WORKER_INDEX)",
    ]
    assert [t.value for t in worker.engine_argv][-2:] == ["--node-rank", "1"]
    assert worker.mangled == []


def vllm_service(args: str, nodes: int = 2) -> str:
    return f"""
VllmWorker:
  componentType: worker
  multinode: {{nodeCount: {nodes}}}
  resources: {{limits: {{gpu: "8"}}}}
  envs:
    - {{name: MODEL_PATH, value: org/model}}
  extraPodSpec:
    mainContainer:
      command: [python3, -m, dynamo.vllm]
      args: {args}
"""


def test_vllm_data_parallel_worker_is_always_shell_wrapped(tmp_path):
    # backend_vllm.go injectDataParallelLaunchFlags; cf. the operator's own test expectation
    # "--data-parallel-start-rank $(( 8 * $((GROVE_PCLQ_POD_INDEX + 1)) ))"
    dep, _ = deployment(tmp_path, "vllm", vllm_service('[--model, "$(MODEL_PATH)", --data-parallel-size, "16"]'))
    by_role = pods(dep)
    worker, leader = by_role[("VllmWorker", "worker")], by_role[("VllmWorker", "leader")]
    host = "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-vllmworker-ldr-0.$(GROVE_HEADLESS_SERVICE)"
    assert worker.args == [
        r'exec python3 -m dynamo.vllm --model "\$(MODEL_PATH)" --data-parallel-size 16 --data-parallel-hybrid-lb '
        "--data-parallel-size-local 8 --data-parallel-start-rank $(( 8 * $((GROVE_PCLQ_POD_INDEX + 1)) )) "
        f"--data-parallel-address {host} --data-parallel-rpc-port 13445"
    ]
    argv = [t.value for t in worker.engine_argv]
    assert argv[argv.index("--data-parallel-start-rank") + 1] == "8"
    assert argv[4] == "\\org/model"
    assert leader.args[4:] == [
        "--data-parallel-hybrid-lb",
        "--data-parallel-size-local",
        "8",
        "--data-parallel-start-rank",
        "0",
        "--data-parallel-address",
        host,
        "--data-parallel-rpc-port",
        "13445",
    ]
    assert leader.mangled == []
    # under LWS the worker is wrapped too: the start rank is shell arithmetic whatever the deployer
    lws_worker = pods(dep, "lws")[("VllmWorker", "worker")]
    assert (
        lws_worker.command == ["sh", "-c"]
        and "--data-parallel-start-rank $(( 8 * $(LWS_WORKER_INDEX) ))" in lws_worker.args[0]
    )
    assert [t.value for t in lws_worker.engine_argv][4] == "\\org/model"


def test_vllm_tensor_parallel_over_nodes_uses_mp(tmp_path):
    dep, _ = deployment(tmp_path, "vllm", vllm_service("[--model, org/model, --tensor-parallel-size, '16']"))
    by_role = pods(dep)
    host = "$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-vllmworker-ldr-0.$(GROVE_HEADLESS_SERVICE)"
    leader, worker = by_role[("VllmWorker", "leader")], by_role[("VllmWorker", "worker")]
    assert leader.args[4:] == [
        "--distributed-executor-backend",
        "mp",
        "--nnodes",
        "2",
        "--master-addr",
        host,
        "--master-port",
        "29500",
        "--node-rank",
        "0",
    ]
    assert worker.args == [
        f"exec python3 -m dynamo.vllm --model org/model --tensor-parallel-size 16 --distributed-executor-backend mp "
        f"--nnodes 2 --master-addr {host} --master-port 29500 --node-rank $((GROVE_PCLQ_POD_INDEX + 1)) --headless"
    ]
    assert ("VLLM_NIXL_SIDE_CHANNEL_HOST", "fieldRef status.podIP") in [(e.name, e.value_from) for e in worker.env]
    assert worker.mangled == []


SINGLE_NODE = {
    "vllm": (
        "[python3, -m, dynamo.vllm]",
        '[--model, "$(MODEL_PATH)", --tensor-parallel-size, "8"]',
        ["python3", "-m", "dynamo.vllm", "--model", "org/model", "--tensor-parallel-size", "8"],
    ),
    "sglang": (
        "[python3, -m, dynamo.sglang]",
        '[--model-path, "$(MODEL_PATH)", --tp, "8"]',
        ["python3", "-m", "dynamo.sglang", "--model-path", "org/model", "--tp", "8"],
    ),
    "trtllm": (
        "[/bin/sh, -c]",
        '["exec python3 -m dynamo.trtllm --model-path \\"$MODEL_PATH\\" --extra-engine-args /config/e.yaml"]',
        ["python3", "-m", "dynamo.trtllm", "--model-path", "org/model", "--extra-engine-args", "/config/e.yaml"],
    ),
}


@pytest.mark.parametrize("framework", sorted(SINGLE_NODE))
def test_single_node_pods_run_the_manifest_command_as_written(tmp_path, framework):
    command, args, expected = SINGLE_NODE[framework]
    dep, _ = deployment(
        tmp_path,
        framework,
        f"""
Frontend:
  componentType: frontend
  extraPodSpec: {{mainContainer: {{command: [python3, -m, dynamo.frontend], args: [--http-port, "8000"]}}}}
Worker:
  componentType: worker
  envs:
    - {{name: MODEL_PATH, value: org/model}}
  resources: {{limits: {{gpu: "8"}}}}
  extraPodSpec: {{mainContainer: {{command: {command}, args: {args}}}}}
""",
    )
    by_role = pods(dep)
    worker, frontend = by_role[("Worker", "single")], by_role[("Frontend", "single")]
    assert worker.command == [c.strip() for c in command.strip("[]").split(",")]
    assert [t.value for t in worker.engine_argv] == expected
    env = {e.name: e.value for e in worker.env}
    # component_common.go / component_worker.go defaults
    assert (
        env["DYN_NAMESPACE"] == "default-demo" and env["DYN_SYSTEM_PORT"] == "9090" and env["DYN_COMPONENT"] == "worker"
    )
    assert [(p.name, p.port) for p in worker.ports] == [("system", 9090), ("nixl", 19090)]
    assert [(p.name, p.port) for p in frontend.ports] == [("http", 8000)]
    assert {e.name: e.value for e in frontend.env}["DYN_HTTP_PORT"] == "8000"
    assert [t.value for t in frontend.engine_argv] == ["python3", "-m", "dynamo.frontend", "--http-port", "8000"]
    assert worker.mangled == [] and worker.multinode is None


def test_shell_quote_matches_the_operator_helper():
    # shellQuoteForBashC: only tokens with a special character are quoted
    assert shell_quote(Traced.of("--tp")).text == "--tp"
    assert shell_quote(Traced.of("")).text == ""
    assert shell_quote(Traced.of("a b")).text == '"a b"'
    assert shell_quote(Traced.of("$(X)")).text == '"\\$(X)"'
    assert shell_quote(Traced.of("it's")).text == '"it\'"\'"\'s"'
    assert shell_quote(Traced.of('a\\"b`')).text == '"a\\\\\\"b\\`"'


def test_kubelet_expansion_ignores_quotes_and_keeps_unknown_references():
    env = {"A": "x y", "N": "1"}
    assert (
        kubelet_expand(Traced.of('"\\$(A)" $(B) $$(A) $((N + 1)) $(A'), env).text == '"\\x y" $(B) $(A) $((N + 1)) $(A'
    )


SCRIPTS = [
    'exec python3 -m x --a "\\$HOME" --b \'$NOPE\' --c \'it\'"\'"\'s\' --d "a\\b" --e $((1 + N * 2)) --f "$V" $V',
    'cd /tmp && python3 -m x --json \'{"k": [1, 2]}\' --y=${V:-d} ${UNSET:-dflt} "" --z a\\ b 2>/dev/null',
    'python3 -m x "$(( 8 * $((N + 1)) ))" "\\n\\$(X)" \\\n  --cont tail # comment',
]


@pytest.mark.skipif(shutil.which("sh") is None, reason="no /bin/sh to compare with")
@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_words_match_the_real_sh(script, tmp_path):
    env = {"N": "3", "V": "two words", "HOME": "/h"}
    shim = tmp_path / "python3"
    shim.write_text('#!/bin/sh\nprintf "%s\\0" "$@"\n')
    shim.chmod(0o755)
    real = (
        subprocess.run(
            ["sh", "-c", script],
            env={**env, "PATH": f"{tmp_path}:/usr/bin:/bin"},
            capture_output=True,
            check=True,
            cwd=tmp_path,
        )
        .stdout.decode()
        .split("\0")[:-1]
    )
    commands = ShellParser(env).parse(Traced.of(script))
    words = next(c.words for c in commands if any(w.text == "python3" for w in c.words))
    ours = [w.text for w in words]
    ours = ours[ours.index("python3") + 1 :]
    assert ours == real


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sh") is None, reason="needs sh and bash")
def test_trtllm_leader_engine_argv_matches_real_shells(tmp_path):
    """Run the rendered leader command (after our kubelet expansion) in the real sh, with mpirun,
    ssh setup and trtllm-llmapi-launch replaced by shims, and compare the launched argv."""
    dep, _ = deployment(
        tmp_path, "trtllm", TRTLLM_DECODE.replace("- decode\n", '- decode\n        - --x\n        - "it\'s a {json}"\n')
    )
    leader = pods(dep)[("Decode", "leader")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "argv"
    shims = {
        "mpirun": 'while [ "$1" != bash ]; do shift; done; exec "$@"',  # run the program on "each rank"
        "trtllm-llmapi-launch": f'printf "%s\\0" "$@" > {out}',
        "ls": "exit 0",
        "cp": "exit 0",
        "chmod": "exit 0",
    }
    for name, body in shims.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / ".ssh").mkdir()
    env = {e.name: e.value for e in leader.env if e.value is not None}
    script = kubelet_expand(Traced.of(leader.args[0]), env).text
    subprocess.run(
        ["/bin/sh", "-c", script],
        check=True,
        cwd=tmp_path,
        env={**env, "HOME": str(tmp_path), "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
    )
    real = out.read_bytes().decode().split("\0")[:-1]
    assert real == [t.value for t in leader.engine_argv]
    assert real[4] == "\\org/model" and real[-1] == "it's a {json}"


def test_shipped_wide_ep_decode_leader_is_rendered_with_mpirun():
    from harness.analysis.render import render_recipe
    from harness.recipe.model import Recipe

    root = Path(__file__).resolve().parent.parent / "recipes"
    recipe = Recipe(root / "deepseek-r1/trtllm/disagg-wide-ep", root)
    if recipe.deployment is None:
        pytest.skip("the shipped catalogue has no deepseek-r1/trtllm/disagg-wide-ep")
    decode = {p.role: p for p in render_recipe(recipe) if p.service == "Decode"}
    assert "mpirun" in decode["leader"].launcher and decode["worker"].engine_argv is None
    assert decode["leader"].engine_module == "dynamo.trtllm"
    assert "--disaggregation-mode" in [t.value for t in decode["leader"].engine_args]


def test_trtllm_leader_embeds_a_shell_command_raw_and_exec_breaks_it(tmp_path):
    # setupLeaderContainer: a non-python command's Args are joined raw into bash -c '...'
    # (the `sh -c` command word is dropped); `exec` then reaches trtllm-llmapi-launch as a program name
    service = TRTLLM_DECODE.replace("command: [python3, -m, dynamo.trtllm]", "command: [/bin/sh, -c]").replace(
        """      args:
        - --model-path
        - "$(MODEL_PATH)"
        - --disaggregation-mode
        - decode""",
        """      args: ['python3 -m dynamo.trtllm --model-path "$MODEL_PATH"']""",
    )
    dep, _ = deployment(tmp_path, "trtllm", service)
    leader = pods(dep)[("Decode", "leader")]
    assert leader.args[0].endswith(
        """ bash -c 'trtllm-llmapi-launch python3 -m dynamo.trtllm --model-path "$MODEL_PATH"'"""
    )
    assert [t.value for t in leader.engine_argv] == ["python3", "-m", "dynamo.trtllm", "--model-path", "org/model"]
    assert leader.mangled == []

    dep, _ = deployment(tmp_path, "trtllm", service.replace("args: ['python3", "args: ['exec python3"))
    leader = pods(dep)[("Decode", "leader")]
    assert leader.engine_argv is None
    assert any("'exec'" in n for n in leader.notes)


def test_check_reports_a_leader_that_cannot_start_and_a_mangled_argument(tmp_path):
    from harness.checks import CheckContext, all_checks, run_check
    from harness.recipe.model import Recipe

    recipe_dir = tmp_path / "m" / "trtllm" / "disagg"
    recipe_dir.mkdir(parents=True)
    deployment(recipe_dir, "trtllm", TRTLLM_DECODE)
    chk = next(c for c in all_checks() if c.id == "engine-args-survive-operator")
    findings = run_check(chk, Recipe(recipe_dir, tmp_path), CheckContext(tmp_path))
    assert [(f.line, "`\\org/model`" in f.message) for f in findings] == [
        (line_of(recipe_dir / "deploy.yaml", '"$(MODEL_PATH)"'), True)
    ]
    assert "Decode leader (Grove, LWS)" in findings[0].message

    deployment(
        recipe_dir,
        "trtllm",
        TRTLLM_DECODE.replace("command: [python3, -m, dynamo.trtllm]", "command: [/bin/sh, -c]").replace(
            """      args:
        - --model-path
        - "$(MODEL_PATH)"
        - --disaggregation-mode
        - decode""",
            """      args: ['exec python3 -m dynamo.trtllm --model-path "$MODEL_PATH"']""",
        ),
    )
    findings = run_check(chk, Recipe(recipe_dir, tmp_path), CheckContext(tmp_path))
    assert len(findings) == 1 and "cannot start the engine" in findings[0].message
    assert findings[0].line == line_of(recipe_dir / "deploy.yaml", "command: [/bin/sh, -c]")


def test_render_command_shows_the_leaders_mpirun_and_the_decode_argv_as_received(capsys):
    import yaml

    from harness.cli import main

    root = Path(__file__).resolve().parent.parent / "recipes"
    if not (root / "deepseek-r1/trtllm/disagg-wide-ep").is_dir():
        pytest.skip("the shipped catalogue has no deepseek-r1/trtllm/disagg-wide-ep")
    assert main(["render", "deepseek-r1/trtllm/disagg-wide-ep", "--recipes-dir", str(root)]) == 0
    [doc] = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    leader = next(p for p in doc["pods"] if p["service"] == "Decode" and p["role"] == "leader")
    assert " mpirun " in leader["args"][0] and "mpirun" in leader["launcher"]
    assert leader["engineArgv"][:3] == ["python3", "-m", "dynamo.trtllm"]
    assert "--disaggregation-mode" in leader["engineArgv"]
    assert (
        main(
            [
                "render",
                "deepseek-r1/trtllm/disagg-wide-ep",
                "--recipes-dir",
                str(root),
                "--multinode",
                "lws",
                "--format",
                "json",
            ]
        )
        == 0
    )
    pods = json.loads(capsys.readouterr().out)["pods"]
    assert {(p["service"], p["role"]) for p in pods} >= {
        ("Decode", "leader"),
        ("Decode", "worker"),
        ("Prefill", "single"),
    }
