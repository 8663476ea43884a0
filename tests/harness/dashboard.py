"""The chart's Grafana dashboard as the tests read it: its queries, filled in as Grafana would."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

DASHBOARD = (
    Path(__file__).resolve().parents[2]
    / "charts"
    / "redisqueue-operator"
    / "dashboards"
    / "redisqueue-operator.json"
)


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target of every panel, rows included."""
    found: list[tuple[str, str]] = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["expr"]))
    return found


def fill(expr: str, variables: dict[str, str]) -> str:
    """The query Grafana sends for these variable values."""
    for name, val in variables.items():
        expr = expr.replace(f"${name}", val)
    assert "$" not in expr, f"a variable is left in {expr!r}"
    return expr


def variables_for(namespace: str, name: str, client: str) -> dict[str, str]:
    """The variables of a dashboard on one RedisQueue and one client: the cluster set to
    All (a Prometheus without a cluster label) and a rate interval wide enough to hold a
    test's work, as a dashboard over the last hour would."""
    return {
        "cluster": ".*",
        "namespace": namespace,
        "name": name,
        "client": client,
        "__rate_interval": "5m",
    }


def has_finite_data(result: list[dict[str, Any]]) -> bool:
    """Whether an instant query's result has a finite sample: data a panel can show."""
    return any(math.isfinite(float(sample["value"][1])) for sample in result)
