"""Named sim profiles: how far a recipe's benchmark and topology are scaled down to fit a small CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SimProfile:
    """Limits for one rehearsal; the defaults keep a recipe under 90 s on 2 cores."""

    name: str
    max_concurrency: int
    request_count: int
    max_input_tokens: int
    max_output_tokens: int
    # The mocker simulates every DP rank; 32 ranks idle cheaply, but each adds a scheduler loop.
    max_data_parallel: int
    speedup_ratio: float = 1.0
    startup_timeout_s: float = 60.0
    perf_timeout_s: float = 240.0

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, SimProfile] = {
    "ci": SimProfile(
        "ci", max_concurrency=4, request_count=50, max_input_tokens=512, max_output_tokens=64, max_data_parallel=32
    ),
    "laptop": SimProfile(
        "laptop",
        max_concurrency=8,
        request_count=200,
        max_input_tokens=2048,
        max_output_tokens=256,
        max_data_parallel=32,
        perf_timeout_s=600.0,
    ),
}


def get_profile(name: str) -> SimProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown sim profile {name!r}: choose one of {', '.join(PROFILES)}") from None
