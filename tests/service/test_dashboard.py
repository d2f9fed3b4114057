"""The Grafana dashboard in the chart (helm/coldproxy/dashboards/coldproxy.json) loads, and every metric its
queries use is one the service exports on /metrics, with the labels the queries match on."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "coldproxy" / "dashboards" / "coldproxy.json"
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "")
REFERENCE = re.compile(r"\b(coldproxy_[a-z0-9_]+)(\{([^}]*)\})?")


def test_every_dashboard_query_uses_an_exported_metric_and_its_labels(tiny):
    # traffic, so that labelled series have samples: an item, a ranking, a recommendation
    assert tiny.post("/v1/items", data={"item_id": "dash-1", "text": "A red scarf."}).status_code == 200
    assert tiny.post("/v1/rank", json={"user_id": "1", "item_ids": ["warm-0", "dash-1"]}).status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(tiny.get("/metrics").text)}
    labels = {name: {k for s in f.samples for k in s.labels} for name, f in families.items()}

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12 and {p["title"].split(":")[0] for p in dashboard["panels"]} >= {
        "Ingestion rate (new items stored)",
        "Drift",
        "Graduation",
    }
    checked = 0
    for expr in exprs:
        for name, _, matchers in REFERENCE.findall(expr):
            family = next(
                (
                    name[: len(name) - len(s)] if s else name
                    for s in SUFFIXES
                    if name.endswith(s) and (name[: len(name) - len(s)] if s else name) in families
                ),
                None,
            )
            assert family is not None, f"{name} (in {expr}) is not on /metrics"
            for key in re.findall(r"([a-z_]+)\s*=~?", matchers):
                assert key in labels[family] | {"le"}, f"{family} has no label {key} (in {expr})"
            checked += 1
    assert checked >= len(exprs)
