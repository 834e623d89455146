"""How strict the verdicts are: the tolerance policy and its [tool.recipe-harness.baselines] table in pyproject.toml."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Why these numbers: docs in benchmarks/regression_detection.py and the package docstring.
DEFAULT_FLOORS_PCT: dict[str, float] = {"throughput": 5.0, "latency": 5.0}


class PolicyError(ValueError):
    """A malformed [tool.recipe-harness.baselines] table; the message names the file."""


def metric_family(key: str) -> str:
    """`throughput` for the *_throughput metrics, `latency` for everything else gated (TTFT, ITL, request latency)."""
    return "throughput" if key.partition(".")[0].endswith("throughput") else "latency"


@dataclass(frozen=True)
class Policy:
    """How strict the verdicts are. Floors are percentages by family, or by exact metric key (which wins)."""

    k: float = 3.0
    floors_pct: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOORS_PCT))
    warn_fraction: float = 0.5
    output_length_tolerance_pct: float = 2.0
    confirm_after: int = 2

    def floor_pct(self, key: str) -> float:
        if key in self.floors_pct:
            return self.floors_pct[key]
        return self.floors_pct.get(metric_family(key), DEFAULT_FLOORS_PCT[metric_family(key)])

    def tolerance_pct(self, key: str, cv: float, baseline_cv: float) -> float:
        """max(floor, k x the larger CV): the noisier side of the comparison sets the band."""
        return max(self.floor_pct(key), self.k * max(cv, baseline_cv) * 100.0)

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "floorsPct": dict(self.floors_pct),
            "warnFraction": self.warn_fraction,
            "outputLengthTolerancePct": self.output_length_tolerance_pct,
            "confirmAfter": self.confirm_after,
        }


DEFAULT_POLICY = Policy()
_POLICY_KEYS = {
    "k": float,
    "warn-fraction": float,
    "output-length-tolerance-pct": float,
    "confirm-after": int,
    "floors": dict,
}


def policy_from_table(table: Mapping[str, Any], source: str = "policy") -> Policy:
    """A Policy from the kebab-case TOML table; unknown keys and wrong types are errors, not silently ignored."""
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        kind = _POLICY_KEYS.get(key)
        if kind is None:
            raise PolicyError(
                f"{source}: unknown key {key!r} in [tool.recipe-harness.baselines] (known: {', '.join(_POLICY_KEYS)})"
            )
        if kind is dict:
            if not isinstance(value, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value.values()
            ):
                raise PolicyError(
                    f"{source}: floors must map a family (throughput, latency) or a metric key to a percentage >= 0"
                )
            kwargs["floors_pct"] = {**DEFAULT_FLOORS_PCT, **{k: float(v) for k, v in value.items()}}
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PolicyError(f"{source}: {key} must be a number >= 0, got {value!r}")
        else:
            kwargs[key.replace("-", "_")] = kind(value)
    policy = Policy(**kwargs)
    if policy.k <= 0 or not 0 <= policy.warn_fraction <= 1 or policy.confirm_after < 1:
        raise PolicyError(f"{source}: need k > 0, 0 <= warn-fraction <= 1 and confirm-after >= 1")
    return policy


def load_policy(pyproject: Path | None = None) -> Policy:
    """The policy from `[tool.recipe-harness.baselines]` in pyproject.toml (the nearest one above the
    working directory when no path is given); the defaults when there is no such table."""
    if pyproject is None:
        here = Path.cwd()
        pyproject = next(
            (d / "pyproject.toml" for d in (here, *here.parents) if (d / "pyproject.toml").is_file()), None
        )
        if pyproject is None:
            return DEFAULT_POLICY
    try:
        data = tomllib.loads(Path(pyproject).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{pyproject}: {exc}") from None
    table = data.get("tool", {}).get("recipe-harness", {}).get("baselines")
    return DEFAULT_POLICY if table is None else policy_from_table(table, str(pyproject))
