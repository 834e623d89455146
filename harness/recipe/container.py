"""A container of a manifest as the recipe writes it: image, command line (read once, with
harness/recipe/commandline.py), and its literal env with the lines each value is on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from harness.recipe.commandline import Script, Token, dynamo_module_at, parse_script, shell_script_word
from harness.recipe.findings import Loc
from harness.recipe.yamlsrc import Document, SrcMap, dig, mapping, sequence

_ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Container:
    """A container spec (DGD main container, Job container, Deployment container)."""

    data: SrcMap
    env: dict[str, str] = field(default_factory=dict)  # literal values, service/spec-level env merged in
    env_locs: dict[str, Loc] = field(default_factory=dict)
    env_from_secret: dict[str, str] = field(default_factory=dict)  # var -> secret name

    @property
    def loc(self) -> Loc:
        return self.data.loc

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def image(self) -> Any:
        return self.data.get("image")

    @property
    def image_loc(self) -> Loc:
        return self.data.loc_of("image") if "image" in self.data else self.data.loc

    def _list(self, key: str) -> list[Token]:
        seq = sequence(self.data.get(key))
        if seq is None:
            return []
        return [Token(str(v), seq.loc_of(i)) for i, v in enumerate(seq) if isinstance(v, (str, int, float))]

    @property
    def command(self) -> list[Token]:
        return self._list("command")

    @property
    def args(self) -> list[Token]:
        return self._list("args")

    @cached_property
    def shell_script(self) -> Token | None:
        """The script of a `sh -c` container (command or args form), else None
        (harness/recipe/commandline.py `shell_script_word`)."""
        return shell_script_word(self.command + self.args)

    def expand(self, text: str) -> str:
        """Resolve $VAR, ${VAR} and $(VAR) from the container's literal env; unknown refs stay."""

        def sub(m: re.Match) -> str:
            name = m.group(1) or m.group(2) or m.group(3)
            return self.env.get(name, m.group(0))

        for _ in range(3):  # env values may reference each other
            new = _ENV_REF.sub(sub, text)
            if new == text:
                break
            text = new
        return text

    @cached_property
    def script(self) -> Script:
        """The command line as commands (a `sh -c` script split, or the exec form), env expanded,
        every word at the line to edit (an env var's value line when the word comes from one)."""
        return parse_script(self)

    def dynamo_invocation(self) -> tuple[Token, list[Token]] | None:
        """(the `dynamo.vllm` word, the words after it) of the `python -m dynamo.X` call: the one the
        shell runs in the foreground when the script also starts one in the background (`python -m
        dynamo.frontend ... &` then `python -m dynamo.trtllm ...`: the container lives as long as the
        foreground process, which is what the service is)."""
        calls = [(cmd, at) for cmd in self.script.commands if (at := dynamo_module_at(cmd.words)) is not None]
        cmd, at = next(((c, a) for c, a in calls if c.end != "&"), calls[0] if calls else (None, None))
        if cmd is None or at is None:
            return None
        return cmd.words[at], cmd.words[at + 1 :]


def env_literals(env: Any) -> tuple[dict[str, str], dict[str, Loc]]:
    values: dict[str, str] = {}
    locs: dict[str, Loc] = {}
    seq = sequence(env)
    if seq is None:
        return values, locs
    for i, item in enumerate(seq):
        item = mapping(item)
        if item is None or not isinstance(item.get("name"), str):
            continue
        if "value" in item and item.get("value") is not None:
            values[item["name"]] = str(item["value"])
            locs[item["name"]] = item.loc_of("value")
        else:
            locs.setdefault(item["name"], seq.loc_of(i))
    return values, locs


def build_container(
    data: SrcMap | None, service: SrcMap | None, base_env: dict[str, str], base_locs: dict[str, Loc], service_env: Any
) -> Container | None:
    if data is None:
        return None
    env, locs = dict(base_env), dict(base_locs)
    for source in (service_env, data.get("env")):
        source_env, source_locs = env_literals(source)
        env.update(source_env)
        locs.update(source_locs)
    secret_refs: dict[str, str] = {}
    for item in sequence(data.get("env")) or []:
        name = dig(item, "valueFrom", "secretKeyRef", "name")
        if isinstance(name, str) and isinstance(dig(item, "name"), str):
            secret_refs[item["name"]] = name
    return Container(data, env, locs, secret_refs)


def pod_containers(doc: Document) -> list[Container]:
    """Containers (and init containers) of a Job, Deployment, StatefulSet or Pod manifest."""
    data = doc.data if isinstance(doc.data, SrcMap) else None
    if data is None:
        return []
    spec = mapping(data.get("spec"))
    if doc.kind == "Pod":
        pod = spec
    elif doc.kind == "CronJob":
        pod = mapping(dig(spec, "jobTemplate", "spec", "template", "spec"))
    else:
        pod = mapping(dig(spec, "template", "spec"))
    if pod is None:
        return []
    out = []
    for key in ("initContainers", "containers"):
        for c in sequence(pod.get(key)) or []:
            c = mapping(c)
            if c is not None:
                out.append(build_container(c, None, {}, {}, None))
    return [c for c in out if c is not None]
