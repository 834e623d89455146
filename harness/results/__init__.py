"""What a run measured and what it means: metrics, baselines, verdicts, history and reports."""
