"""The OpenAI API smoke suite run against a deployed recipe's frontend (sim and GPU stages share it)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import httpx
import openai

from harness.run.stage import StageSkip, StepFailed

MAX_TOKENS_PROBE = 12
DEGENERACY_PROBE_TOKENS = 32
# Routers that spread independent requests over every worker; `direct` pins each request to a worker.
SPREADING_ROUTERS = {"round-robin", "random", "power-of-two", "least-loaded", "kv", "device-aware-weighted"}


@dataclass
class SmokeSuite:
    """One method per check; each raises StepFailed with a message a recipe author can act on.

    `router_mode` and `request_counts` (worker -> requests served, from the workers' metrics) are
    only needed by the load-spread check; without them it is skipped."""

    CHECKS = (
        "models",
        "chat",
        "chat_stream",
        "completions",
        "max_tokens",
        "bad_request",
        "unknown_model",
        "load_spread",
        "not_degenerate",
    )

    base_url: str
    model: str
    router_mode: str | None = None
    request_counts: Callable[[], dict[str, int]] | None = None
    timeout_s: float = 30.0
    prompts_sent: int = field(default=0, init=False)

    @cached_property
    def client(self) -> openai.OpenAI:
        # No retries: a retry would hide a 5xx or a dropped connection the check must see.
        return openai.OpenAI(
            base_url=f"{self.base_url.rstrip('/')}/v1", api_key="sim", timeout=self.timeout_s, max_retries=0
        )

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    # ---- checks ------------------------------------------------------------------------------

    def check_models(self) -> None:
        ids = [m.id for m in self._call("GET /v1/models", self.client.models.list).data]
        if self.model not in ids:
            raise StepFailed(
                f"/v1/models lists {ids or 'no model'}; the recipe serves {self.model!r} (check --served-model-name)"
            )

    def check_chat(self) -> None:
        resp = self._chat("Say hello.", max_tokens=16)
        if not resp.choices:
            raise StepFailed("chat completion returned no choices")
        msg = resp.choices[0].message
        if msg.role != "assistant" or not isinstance(msg.content, str) or not msg.content:
            raise StepFailed(
                f"chat completion message is role={msg.role!r} content={msg.content!r}; "
                "expected a non-empty assistant message"
            )
        _check_usage(resp.usage, "chat completion")

    def check_chat_stream(self) -> None:
        stream = self._call(
            "streaming chat",
            lambda: self.client.chat.completions.create(
                model=self.model,
                messages=[self._message("Count to ten.")],
                max_tokens=16,
                stream=True,
                stream_options={"include_usage": True},
            ),
        )
        content_chunks, usage, finish = 0, None, None
        text: list[str] = []
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        content_chunks += 1
                        text.append(choice.delta.content)
                    finish = choice.finish_reason or finish
        if content_chunks < 2:
            raise StepFailed(f"streaming chat yielded {content_chunks} content chunk(s); expected a stream of several")
        if finish is None:
            raise StepFailed("streaming chat never sent a finish_reason")
        if usage is None:
            raise StepFailed("streaming chat with stream_options.include_usage sent no final usage chunk")
        _check_usage(usage, "streaming chat final chunk")

    def check_completions(self) -> None:
        resp = self._call(
            "POST /v1/completions",
            lambda: self.client.completions.create(
                model=self.model, prompt=self._prompt("Once upon a time"), max_tokens=16
            ),
        )
        if not resp.choices or not isinstance(resp.choices[0].text, str) or not resp.choices[0].text:
            raise StepFailed("/v1/completions returned no text")
        _check_usage(resp.usage, "completion")

    def check_max_tokens(self, max_tokens: int = MAX_TOKENS_PROBE) -> None:
        resp = self._chat("Write a long story.", max_tokens=max_tokens, extra_body={"ignore_eos": True})
        got = resp.usage.completion_tokens if resp.usage else None
        if got != max_tokens:
            raise StepFailed(f"max_tokens={max_tokens} with ignore_eos produced usage.completion_tokens={got}")
        if resp.choices[0].finish_reason != "length":
            raise StepFailed(
                f"max_tokens reached but finish_reason={resp.choices[0].finish_reason!r}, expected 'length'"
            )

    def check_bad_request(self) -> None:
        """Malformed JSON and a request without messages must get a 4xx quickly: not a 5xx, not a hang."""
        url = f"{self.base_url.rstrip('/')}/v1/chat/completions"
        bodies = {
            "malformed JSON": b'{"model": "' + self.model.encode() + b'", "messages": [',
            "no messages": b'{"model": "' + self.model.encode() + b'"}',
        }
        with httpx.Client(timeout=self.timeout_s) as http:
            for what, body in bodies.items():
                try:
                    resp = http.post(url, content=body, headers={"content-type": "application/json"})
                except httpx.TimeoutException:
                    raise StepFailed(f"a request with {what} got no answer within {self.timeout_s:.0f} s") from None
                except httpx.HTTPError as e:
                    raise StepFailed(f"a request with {what} broke the connection: {e}") from None
                if not 400 <= resp.status_code < 500:
                    raise StepFailed(
                        f"a request with {what} got HTTP {resp.status_code}; "
                        f"expected a 4xx client error: {resp.text[:200]}"
                    )

    def check_unknown_model(self) -> None:
        name = f"{self.model}-does-not-exist"
        try:
            self.client.chat.completions.create(model=name, messages=[self._message("hi")], max_tokens=4)
        except openai.NotFoundError:
            return
        except openai.APIStatusError as e:
            raise StepFailed(f"a request for unknown model {name!r} got HTTP {e.status_code}; expected 404") from None
        except openai.APIError as e:
            raise StepFailed(f"a request for unknown model {name!r} failed without an HTTP answer: {e}") from None
        raise StepFailed(f"a request for unknown model {name!r} succeeded; expected 404")

    def check_load_spread(self) -> None:
        """Every worker replica serves at least one request when the router spreads load.

        round-robin: one request per worker in sequence would do; twice that leaves a margin.
        random, power-of-two, least-loaded: enough requests that missing a worker by chance is
        below 1 in 1000 (8 per worker: n * (1 - 1/n)^(8n) < 0.002 for any n).
        kv: the KV router sends shared prefixes to the worker that caches them and breaks
        ties by load, so the prompts are distinct and sent concurrently: in-flight requests
        make busy workers cost more and the rest get picked.
        direct: requests name their worker; there is nothing to spread, so the check passes.
        Counts come from the workers' own metrics (before/after), so earlier traffic is ignored.
        """
        router_mode, request_counts = self.router_mode, self.request_counts
        if request_counts is None or router_mode is None:
            raise StageSkip("no per-worker request counts here: the load-spread check needs the workers' metrics")
        if router_mode not in SPREADING_ROUTERS:
            return
        before = request_counts()
        workers = sorted(before)
        if len(workers) < 2:
            return
        if any(v < 0 for v in before.values()):
            raise StepFailed(f"could not read request counts from every worker: {before}")
        per_worker = 2 if router_mode == "round-robin" else 8
        total = per_worker * len(workers)
        parallel = 1 if router_mode == "round-robin" else min(len(workers), 8)
        prompts = [self._prompt(f"Request {i}: {_distinct_words(i)}") for i in range(total)]
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(lambda p: self._chat(p, max_tokens=16 if parallel > 1 else 4), prompts))
        after = _settled_counts(request_counts, before, total)
        served = {w: after.get(w, 0) - before.get(w, 0) for w in workers}
        idle = [w for w, n in served.items() if n < 1]
        if idle:
            raise StepFailed(
                f"router {router_mode!r}: {len(idle)} of {len(workers)} workers served no request out of {total}: "
                f"{', '.join(idle)} (per worker: {served})"
            )

    def check_not_degenerate(self) -> None:
        resp = self._chat("Tell me about the sea.", max_tokens=DEGENERACY_PROBE_TOKENS, extra_body={"ignore_eos": True})
        text = resp.choices[0].message.content or ""
        problem = degeneracy(text)
        if problem:
            raise StepFailed(f"output of {DEGENERACY_PROBE_TOKENS} tokens is degenerate ({problem}): {text[:120]!r}")

    # ---- helpers -----------------------------------------------------------------------------

    def _prompt(self, text: str) -> str:
        # A counter keeps prompts distinct so no check is answered from another check's KV prefix.
        self.prompts_sent += 1
        return f"[{self.prompts_sent}] {text}"

    def _message(self, text: str) -> dict:
        return {"role": "user", "content": self._prompt(text)}

    def _chat(self, text: str, max_tokens: int, extra_body: dict | None = None):
        return self._call(
            "POST /v1/chat/completions",
            lambda: self.client.chat.completions.create(
                model=self.model, messages=[self._message(text)], max_tokens=max_tokens, extra_body=extra_body
            ),
        )

    def _call(self, what: str, fn: Callable):
        try:
            return fn()
        except openai.APITimeoutError:
            raise StepFailed(f"{what} got no answer within {self.timeout_s:.0f} s") from None
        except openai.APIStatusError as e:
            raise StepFailed(f"{what} failed with HTTP {e.status_code}: {str(e.message)[:300]}") from None
        except openai.APIConnectionError as e:
            raise StepFailed(f"{what} could not connect to {self.base_url}: {e}") from None


def _check_usage(usage, what: str) -> None:
    if usage is None:
        raise StepFailed(f"{what} has no usage")
    if not usage.prompt_tokens or not usage.completion_tokens:
        raise StepFailed(
            f"{what} usage counts nothing: prompt_tokens={usage.prompt_tokens} "
            f"completion_tokens={usage.completion_tokens}"
        )
    if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens:
        raise StepFailed(
            f"{what} usage does not add up: {usage.prompt_tokens} + {usage.completion_tokens} != {usage.total_tokens}"
        )


def degeneracy(text: str) -> str:
    """Why a generated text is degenerate (empty, one word repeated, one short unit repeated), or ""."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    words = stripped.split()
    if len(words) >= 4 and len(set(words)) == 1:
        return f"the word {words[0]!r} repeated {len(words)} times"
    if len(stripped) >= 8 and re.fullmatch(r"(.{1,16}?)\1+", stripped, flags=re.S):
        return "one short sequence repeated"
    return ""


def _distinct_words(i: int) -> str:
    # Different first words make different first KV blocks, so no two prompts share a prefix.
    words = (
        "amber",
        "basil",
        "cedar",
        "delta",
        "ember",
        "fjord",
        "garnet",
        "harbor",
        "indigo",
        "juniper",
        "kestrel",
        "lagoon",
    )
    return " ".join(words[(i * 7 + k) % len(words)] + str(i * 31 + k) for k in range(6))


def _settled_counts(
    request_counts: Callable[[], dict[str, int]], before: dict[str, int], sent: int, wait_s: float = 3.0
) -> dict[str, int]:
    """Worker metrics are updated asynchronously: poll briefly until all sent requests are counted."""
    deadline = time.monotonic() + wait_s
    while True:
        after = request_counts()
        if sum(after.values()) - sum(before.values()) >= sent or time.monotonic() > deadline:
            return after
        time.sleep(0.1)
