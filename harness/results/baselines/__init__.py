"""Baselines: aggregate repeated benchmark runs, judge them against a recorded baseline, keep a history.

The sim and GPU stages call `evaluate_recipe` once per recipe (or the pieces: `aggregate`,
`find_baseline`, `compare`, `update_baseline`, `append_history`). One module per job:
policy (how strict), aggregate (runs -> spreads), store (the baseline file and where it lives),
compare (verdicts), history (one line per run, confirmed regressions), evaluate (the one call).
Files:

- `reports/baselines/<env>/<recipe-id>.json`   (schemas/baseline.json; env = `sim` or `gpu/<hardware>`)
- `reports/history/<env>/<recipe-id>.jsonl`    (schemas/history-entry.json, one line per run)

Tolerance of a metric = max(floor of its family, k x CV) with CV the larger of the run's and the
baseline's. A change against the metric's direction beyond the tolerance fails, beyond half of it
warns. Policy defaults are in policy.py; a project overrides them in pyproject.toml:

    [tool.recipe-harness.baselines]
    k = 3.0
    warn-fraction = 0.5
    output-length-tolerance-pct = 2.0
    confirm-after = 2
    [tool.recipe-harness.baselines.floors]      # percent, by family or by exact metric key
    throughput = 5.0
    latency = 5.0
    "time_to_first_token.p99" = 15.0
"""

from __future__ import annotations

from harness.results.baselines.aggregate import (
    OUTPUT_LENGTH_METRIC,
    InvalidRun,
    MetricSpread,
    RunStats,
    aggregate,
    delta_pct,
    format_value,
    run_problem,
)
from harness.results.baselines.compare import SEVERITY, VERDICTS, MetricVerdict, RecipeVerdict, compare, judge_metric
from harness.results.baselines.evaluate import Evaluation, evaluate_recipe
from harness.results.baselines.history import (
    HistoryEntry,
    Regression,
    append_history,
    confirm_regressions,
    history_path,
    iter_history,
    read_history,
)
from harness.results.baselines.policy import (
    DEFAULT_FLOORS_PCT,
    DEFAULT_POLICY,
    Policy,
    PolicyError,
    load_policy,
    metric_family,
    policy_from_table,
)
from harness.results.baselines.store import (
    BASELINES_ROOT,
    DEFAULT_ROOTS,
    HISTORY_ROOT,
    REPORTS_DIR,
    SCHEMA_VERSION,
    Baseline,
    BaselineError,
    BaselineMetric,
    BaselineRefused,
    Image,
    Provenance,
    ReportRoots,
    atomic_write_text,
    baseline_path,
    check_environment,
    check_recipe_id,
    describe_change,
    find_baseline,
    git_sha,
    load_baseline,
    manifest_hash,
    package_version,
    refusal_reason,
    repo_relative,
    schema_problems,
    schema_validator,
    update_baseline,
    utc_now,
)

__all__ = [
    "BASELINES_ROOT",
    "DEFAULT_FLOORS_PCT",
    "DEFAULT_POLICY",
    "DEFAULT_ROOTS",
    "HISTORY_ROOT",
    "OUTPUT_LENGTH_METRIC",
    "REPORTS_DIR",
    "SCHEMA_VERSION",
    "SEVERITY",
    "VERDICTS",
    "Baseline",
    "BaselineError",
    "BaselineMetric",
    "BaselineRefused",
    "Evaluation",
    "HistoryEntry",
    "Image",
    "InvalidRun",
    "MetricSpread",
    "MetricVerdict",
    "Policy",
    "PolicyError",
    "Provenance",
    "RecipeVerdict",
    "Regression",
    "ReportRoots",
    "RunStats",
    "aggregate",
    "append_history",
    "atomic_write_text",
    "baseline_path",
    "check_environment",
    "check_recipe_id",
    "compare",
    "confirm_regressions",
    "delta_pct",
    "describe_change",
    "evaluate_recipe",
    "find_baseline",
    "format_value",
    "git_sha",
    "history_path",
    "iter_history",
    "judge_metric",
    "load_baseline",
    "load_policy",
    "manifest_hash",
    "metric_family",
    "package_version",
    "policy_from_table",
    "read_history",
    "refusal_reason",
    "repo_relative",
    "run_problem",
    "schema_problems",
    "schema_validator",
    "update_baseline",
    "utc_now",
]
