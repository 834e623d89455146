"""What a failed run leaves behind:
DGD status, events, pod descriptions and logs, with every token-like value redacted."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# the secret shapes are one list, shared with the security check
from harness.recipe.secrets import (
    BEARER as _BEARER,
)
from harness.recipe.secrets import (
    K8S_NAME as _K8S_NAME,
)
from harness.recipe.secrets import (
    SECRET_ASSIGNMENT as _ASSIGNMENT,
)
from harness.recipe.secrets import (
    SECRET_FLAG as _FLAG,
)
from harness.recipe.secrets import (
    SECRET_NAME as _SECRETISH,
)
from harness.recipe.secrets import (
    TOKEN_VALUE as _HF_TOKEN,
)
from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import Kube, KubeError
from harness.run.k8s.readiness import condition, container_statuses

REDACTED = "<redacted>"


def _looks_secret(value: str) -> bool:
    return not value.startswith("<") and (len(value) >= 32 or not _K8S_NAME.match(value))


@dataclass
class Redactor:
    """Removes known secret values and anything shaped like a token from text and objects."""

    known: set[str] = field(default_factory=set)

    def add(self, value: str | None) -> None:
        # short values would redact ordinary words; a real token is long
        if value and len(value) >= 6:
            self.known.add(value)
            self.known.add(base64.b64encode(value.encode()).decode())

    def text(self, text: str) -> str:
        for value in sorted(self.known, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        text = _HF_TOKEN.sub(REDACTED, text)
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        for pattern in (_ASSIGNMENT, _FLAG):
            text = pattern.sub(
                lambda m: m.group(1) + m.group(2) + (REDACTED if _looks_secret(m.group(3)) else m.group(3)), text
            )
        return text

    def obj(self, value: Any) -> Any:
        """A copy with env values of secret-looking names and secret-looking keys blanked."""
        if isinstance(value, dict):
            out = {}
            secret_env = (
                isinstance(value.get("name"), str) and bool(_SECRETISH.search(value["name"])) and "value" in value
            )
            for key, item in value.items():
                if (secret_env and key == "value") or (
                    isinstance(item, str)
                    and _SECRETISH.search(str(key))
                    and key not in ("secretName", "secretKeyRef", "name", "key")
                ):
                    out[key] = REDACTED
                else:
                    out[key] = self.obj(item)
            return out
        if isinstance(value, list):
            return [self.obj(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def json(self, value: Any) -> str:
        return self.text(json.dumps(self.obj(value), indent=2, sort_keys=True, default=str))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120]


def _event_time(ev: dict) -> str:
    return str(
        ev.get("lastTimestamp")
        or ev.get("eventTime")
        or ev.get("firstTimestamp")
        or (ev.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def format_events(events: list[dict]) -> str:
    lines = []
    for ev in sorted(events, key=_event_time):
        obj = ev.get("involvedObject") or {}
        count = ev.get("count")
        lines.append(
            f"{_event_time(ev)}  {ev.get('type', '')}  {ev.get('reason', '')}  "
            f"{obj.get('kind', '')}/{obj.get('name', '')}"
            f"{f' (x{count})' if count and count > 1 else ''}: {ev.get('message', '')}"
        )
    return "\n".join(lines) + "\n" if lines else "(no events)\n"


def describe_pod(pod: dict, events: list[dict]) -> str:
    """A `kubectl describe pod`-like summary: where it runs, conditions, each container's state, its events."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    lines = [
        f"Name: {meta.get('name')}",
        f"Namespace: {meta.get('namespace')}",
        f"Node: {(pod.get('spec') or {}).get('nodeName') or '<none>'}",
        f"Phase: {status.get('phase')}",
        f"Labels: {json.dumps(meta.get('labels') or {}, sort_keys=True)}",
        "Conditions:",
    ]
    for cond in status.get("conditions") or []:
        lines.append(
            f"  {cond.get('type')}={cond.get('status')} {cond.get('reason') or ''} {cond.get('message') or ''}".rstrip()
        )
    lines.append("Containers:")
    for spec, cs in container_statuses(pod):
        state = cs.get("state") or {}
        which = next(iter(state), "unknown")
        detail = state.get(which) or {}
        lines.append(
            f"  {cs.get('name')}: image={spec.get('image') or cs.get('image')} ready={cs.get('ready')} "
            f"restarts={cs.get('restartCount', 0)}"
        )
        lines.append(f"    state: {which} {detail.get('reason') or ''} {detail.get('message') or ''}".rstrip())
        last = (cs.get("lastState") or {}).get("terminated")
        if last:
            lines.append(f"    last terminated: exit {last.get('exitCode')} {last.get('reason') or ''}".rstrip())
    lines.append("Events:")
    mine = [e for e in events if (e.get("involvedObject") or {}).get("name") == meta.get("name")]
    lines.append("  " + format_events(mine).rstrip("\n").replace("\n", "\n  "))
    return "\n".join(lines) + "\n"


class Diagnostics:
    """Writes everything a person needs to debug a failed run into one folder."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        out_dir: Path,
        redactor: Redactor,
        dgd_ref: tuple[str, str] | None,
        tail_lines: int = 2000,
        owned: Callable[[str, str], bool] | None = None,
    ):
        self.owned = owned  # (kind, name) -> the run's: only those objects, their pods and events are collected
        self.kube = kube
        self.namespace = namespace
        self.out_dir = out_dir
        self.redactor = redactor
        self.dgd_ref = dgd_ref  # (apiVersion, name)
        self.tail_lines = tail_lines

    def _write(self, rel: str, text: str) -> None:
        path = self.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.redactor.text(text))

    def collect(self, step: str, reason: str) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []

        def attempt(what: str, fn) -> Any:
            try:
                return fn()
            except (KubeError, OSError, ValueError) as exc:
                errors.append(f"{what}: {exc}")
                return None

        events = attempt("events", lambda: self.kube.list("v1", "Event", self.namespace)) or []
        if self.owned is not None:
            events = [
                e
                for e in events
                if self.owned(str(dig(e, "involvedObject", "kind")), str(dig(e, "involvedObject", "name")))
            ]
        self._write("events.txt", format_events(events))
        if self.dgd_ref:
            dgd = attempt(
                "dgd", lambda: self.kube.get(self.dgd_ref[0], "DynamoGraphDeployment", self.dgd_ref[1], self.namespace)
            )
            self._write("dgd.json", self.redactor.json(dgd) if dgd else "(the DynamoGraphDeployment does not exist)\n")
        for kind, file in (("Job", "jobs.json"), ("PersistentVolumeClaim", "pvcs.json")):
            api_version = "batch/v1" if kind == "Job" else "v1"
            items = attempt(kind, lambda k=kind, a=api_version: self.kube.list(a, k, self.namespace))
            if items is not None and self.owned is not None:
                items = [i for i in items if self.owned(kind, str(dig(i, "metadata", "name")))]
            if items is not None:
                self._write(file, self.redactor.json(items))
        pods = attempt("pods", lambda: self.kube.list("v1", "Pod", self.namespace)) or []
        if self.owned is not None:
            pods = [p for p in pods if self.owned("Pod", str(dig(p, "metadata", "name")))]
        table = []
        for pod in pods:
            name = str((pod.get("metadata") or {}).get("name"))
            ready = condition(pod, "Ready")
            table.append(
                f"{name}\t{(pod.get('status') or {}).get('phase')}\tReady={(ready or {}).get('status', 'Unknown')}"
            )
            self._write(f"pods/{_safe_name(name)}.describe.txt", describe_pod(pod, events))
            self._write(f"pods/{_safe_name(name)}.json", self.redactor.json(pod))
            for _, cs in container_statuses(pod):
                cname = str(cs.get("name"))
                started = bool(
                    (cs.get("state") or {}).get("running")
                    or (cs.get("state") or {}).get("terminated")
                    or cs.get("restartCount")
                )
                if not started:
                    continue
                log = attempt(
                    f"log {name}/{cname}",
                    lambda n=name, c=cname: self.kube.pod_log(self.namespace, n, c, tail_lines=self.tail_lines),
                )
                if log is not None:
                    self._write(f"logs/{_safe_name(name)}.{_safe_name(cname)}.log", log)
                if int(cs.get("restartCount") or 0) > 0:
                    prev = attempt(
                        f"previous log {name}/{cname}",
                        lambda n=name, c=cname: self.kube.pod_log(
                            self.namespace, n, c, previous=True, tail_lines=self.tail_lines
                        ),
                    )
                    if prev is not None:
                        self._write(f"logs/{_safe_name(name)}.{_safe_name(cname)}.previous.log", prev)
        self._write("pods.txt", "\n".join(table) + "\n" if table else "(no pods)\n")
        summary = [
            f"step: {step}",
            f"namespace: {self.namespace}",
            f"collected: {datetime.now(UTC).isoformat(timespec='seconds')}",
            "",
            "failure:",
            reason,
        ]
        if errors:
            summary += ["", "could not collect:"] + [f"  {e}" for e in errors]
        self._write("summary.txt", "\n".join(summary) + "\n")
        return self.out_dir
