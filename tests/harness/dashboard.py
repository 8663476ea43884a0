"""The chart's Grafana dashboard as the tests read it: its queries, filled in as Grafana would."""

from __future__ import annotations

import json
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
