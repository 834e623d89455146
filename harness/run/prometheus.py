"""Prometheus text exposition: the sums the smoke suite reads from frontend and worker /metrics."""

from __future__ import annotations

import re

_METRIC_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def prometheus_sum(text: str, metric: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        m = _METRIC_LINE.match(line)
        if not m or m.group("name") != metric:
            continue
        have = dict(_LABEL.findall(m.group("labels") or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            try:
                total += float(m.group("value"))
            except ValueError:
                continue
    return total
