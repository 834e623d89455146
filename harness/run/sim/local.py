"""Run a SimPlan as local processes on 127.0.0.1, wait until it serves, and always tear it down."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.run.processes import TERM_GRACE_S, register, spawn, terminate_groups, unregister
from harness.run.prometheus import prometheus_sum
from harness.run.sim.plan import ProcessPlan, SimPlan

HOST = "127.0.0.1"
POLL_S = 0.2
LOG_TAIL_LINES = 25

# Discovery and transport for one private deployment (see shared/reference/sim-stack.md).
SIM_ENV = {
    "DYN_DISCOVERY_BACKEND": "file",
    "DYN_REQUEST_PLANE": "tcp",
    "DYN_EVENT_PLANE": "zmq",
    "DYN_TCP_RPC_HOST": HOST,
    "DYN_TCP_RESPONSE_STREAM_HOST": "lo",  # 1.4.2 wants an interface name here
    "DYN_SYSTEM_HOST": HOST,
    "HF_HUB_OFFLINE": "1",  # never reach for a hub: the model dir is local
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}
_INHERITED_PREFIXES = ("DYN_", "NATS_", "ETCD_")


class DeployError(RuntimeError):
    """The stack did not come up: the message says which process or condition, with its log tail."""


@dataclass
class LocalProcess:
    plan: ProcessPlan
    popen: subprocess.Popen
    log_path: Path
    port: int  # HTTP port of the frontend, system (metrics/health) port of a mocker

    @property
    def name(self) -> str:
        return self.plan.name

    def exit_code(self) -> int | None:
        return self.popen.poll()


@dataclass
class Readiness:
    """What the last readiness probe saw (for timeout messages and the report)."""

    models: list[str] = field(default_factory=list)
    instances: dict[str, int] = field(default_factory=dict)
    error: str = ""


def free_ports(count: int, low: int = 20000, high: int = 32767) -> list[int]:
    """Distinct free loopback ports in [low, high], held while choosing so none repeats.

    Dynamo 1.4.2 parses DYN_SYSTEM_PORT as a signed 16-bit integer, so ports from the kernel's
    ephemeral range (32768+) are rejected; below it they also never collide with outgoing connections."""
    rng = random.Random()
    socks: list[socket.socket] = []
    try:
        for candidate in rng.sample(range(low, high + 1), k=min(high - low + 1, count * 50)):
            if len(socks) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, candidate))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < count:
            raise DeployError(f"found only {len(socks)} of {count} free ports in {low}-{high}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def process_env(base: dict[str, str], work_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment of one process: the caller's, minus any outer Dynamo/NATS/etcd settings, plus ours."""
    env = {k: v for k, v in base.items() if not k.startswith(_INHERITED_PREFIXES)}
    env.update(SIM_ENV)
    env["DYN_FILE_KV"] = str(work_dir / "kv")
    env["HOME"] = str(work_dir / "home")  # the frontend caches model cards under $HOME, ignoring XDG
    env.update(extra)
    return env


def process_argv(proc: ProcessPlan, model_dir: Path, port: int, python: str | None = None) -> list[str]:
    """The command of one process; `python` is the interpreter of the Dynamo release that rehearses."""
    python = python or sys.executable
    if proc.module == "dynamo.frontend":
        return [python, "-m", proc.module, "--http-host", HOST, "--http-port", str(port), *proc.args]
    return [python, "-m", proc.module, "--model-path", str(model_dir), *proc.args]


def count_generate_instances(health: dict) -> dict[str, int]:
    """`generate` endpoint instances per component in the frontend's /health answer (its discovery view)."""
    counts: dict[str, int] = {}
    for inst in health.get("instances") or []:
        if isinstance(inst, dict) and inst.get("endpoint") == "generate":
            comp = str(inst.get("component"))
            counts[comp] = counts.get(comp, 0) + 1
    return counts


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, ""


class LocalDeployment:
    """One plan's processes. Use as a context manager, or call start() and always stop()."""

    def __init__(
        self, plan: SimPlan, model_dir: Path, log_dir: Path, startup_timeout_s: float = 60.0, python: str | None = None
    ):
        self.plan = plan
        self.python = python or sys.executable  # the interpreter of the Dynamo release that rehearses
        self.model_dir = model_dir
        self.log_dir = log_dir
        self.startup_timeout_s = startup_timeout_s
        self.processes: list[LocalProcess] = []
        self.work_dir: Path | None = None
        self.startup_s: float | None = None
        self.readiness = Readiness()
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalDeployment:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Launch everything and wait until ready; on any failure tear down and raise DeployError."""
        register(self)
        t0 = time.monotonic()
        try:
            self._launch()
            self._wait_ready(t0 + self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        """SIGTERM every process group, wait, SIGKILL what is left; remove the private work dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            terminate_groups([p.popen for p in self.processes], TERM_GRACE_S)
        finally:
            if self.work_dir is not None:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            unregister(self)

    # ---- accessors -------------------------------------------------------------------------

    @property
    def frontend(self) -> LocalProcess:
        return self.processes[0]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.frontend.port}"

    @property
    def workers(self) -> list[LocalProcess]:
        return self.processes[1:]

    def ports(self) -> list[int]:
        return [p.port for p in self.processes]

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.processes]

    def worker_request_counts(self) -> dict[str, int]:
        """Requests each worker's `generate` endpoint has served, from its own /metrics."""
        counts: dict[str, int] = {}
        for w in self.workers:
            status, body = http_get(f"http://{HOST}:{w.port}/metrics")
            counts[w.name] = (
                int(prometheus_sum(body, "dynamo_component_requests_total", dynamo_endpoint="generate"))
                if status == 200
                else -1
            )
        return counts

    def usage(self) -> GroupUsage:
        """Resident memory and CPU time of every process in the deployment's process groups, now."""
        return group_usage({p.popen.pid for p in self.processes})

    def check_alive(self) -> None:
        """Raise DeployError when a process has died since start (a crash mid-run is a defect)."""
        for p in self.processes:
            code = p.exit_code()
            if code is not None:
                raise DeployError(f"{p.name} exited with code {code}; last lines of {p.log_path}:\n{tail(p.log_path)}")

    # ---- internals -------------------------------------------------------------------------

    def _launch(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="dynamo-sim-"))
        (self.work_dir / "kv").mkdir()
        (self.work_dir / "home").mkdir()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        plans = [self.plan.frontend, *self.plan.workers]
        ports = free_ports(len(plans))
        for proc, port in zip(plans, ports):
            extra = dict(proc.env)
            if proc.module != "dynamo.frontend":
                extra["DYN_SYSTEM_PORT"] = str(port)  # unique per mocker, or the frontend never lists the model
            env = process_env(dict(os.environ), self.work_dir, extra)
            log_path = self.log_dir / f"{proc.name}.log"
            self.processes.append(
                LocalProcess(
                    proc, spawn(process_argv(proc, self.model_dir, port, self.python), env, log_path), log_path, port
                )
            )

    def _wait_ready(self, deadline: float) -> None:
        expected = self.plan.expected_instances
        while True:
            self.check_alive()
            self.readiness = self._probe()
            served = self.plan.served_model_name in self.readiness.models
            if served and all(self.readiness.instances.get(c, 0) >= n for c, n in expected.items()):
                return
            if time.monotonic() > deadline:
                raise DeployError(self._timeout_message(expected))
            time.sleep(POLL_S)

    def _probe(self) -> Readiness:
        status, body = http_get(f"{self.base_url}/v1/models")
        if status != 200:
            return Readiness(error=f"/v1/models answered {status or 'nothing'}")
        models = [m.get("id") for m in _json(body).get("data") or [] if isinstance(m, dict)]
        status, body = http_get(f"{self.base_url}/health")
        return Readiness(
            models=models,
            instances=count_generate_instances(_json(body)),
            error="" if status == 200 else f"/health answered {status or 'nothing'}",
        )

    def _timeout_message(self, expected: dict[str, int]) -> str:
        r = self.readiness
        parts = [f"not ready after {self.startup_timeout_s:.0f} s:"]
        if self.plan.served_model_name not in r.models:
            parts.append(f"/v1/models lists {r.models or 'nothing'}, not {self.plan.served_model_name!r}")
        culprit = self.frontend
        missing = {c: n for c, n in expected.items() if r.instances.get(c, 0) < n}
        if missing:
            have = ", ".join(f"{c}: {r.instances.get(c, 0)}/{n}" for c, n in expected.items())
            parts.append(f"registered workers {have}")
            comp = next(iter(missing))
            culprit = next((w for w in self.workers if w.plan.component == comp), culprit)
        if r.error:
            parts.append(r.error)
        return " ".join(parts) + f"\nlast lines of {culprit.log_path}:\n{tail(culprit.log_path)}"


@dataclass(frozen=True)
class GroupUsage:
    processes: int
    rss_mb: float
    cpu_s: float


def group_usage(pgids: set[int]) -> GroupUsage:
    """Sum /proc figures over all processes whose process group is in `pgids` (Linux; zeros elsewhere)."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    count, rss, cpu = 0, 0, 0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            resident = int((entry / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
        if int(fields[2]) in pgids:
            count += 1
            rss += resident * page
            cpu += int(fields[11]) + int(fields[12])
    return GroupUsage(count, round(rss / 2**20, 1), round(cpu / ticks, 2))


def _json(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
