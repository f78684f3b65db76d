"""Grafana provisioning and the dashboard: data sources, the provider, and the panels operators need.

The PromQL of every panel is evaluated by a real Prometheus in tests/integration/test_monitoring_promql.py.
"""

from __future__ import annotations

import json

import yaml

from tests.fixtures.prometheus import DASHBOARDS, MONITORING, REPO

PROVISIONING = MONITORING / "grafana" / "provisioning"
DASHBOARD = DASHBOARDS / "recommender.json"
REQUIRED_PANELS = [
    "availability",
    "requests per minute",
    "success ratio",
    "responses by status",
    "p50",
    "p95",
    "p99",
    "cpu per container",
    "memory per container",
    "parser events",
    "parser rejections",
    "consumer lag",
    "online conversion rate",
    "cold-start share",
    "cache hit ratio",
    "active model version",
    "gate hit rates",
    "training cycle duration",
]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_has_its_title_and_every_required_panel():
    board = dashboard()
    assert board["title"] == "Recommender System Monitoring Dashboard"
    titles = " | ".join(panel["title"].lower() for panel in board["panels"])
    missing = [name for name in REQUIRED_PANELS if name not in titles]
    assert missing == []
    latency = next(p for p in board["panels"] if "latency" in p["title"].lower())
    assert [t["expr"].split(",")[0] for t in latency["targets"]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]


def test_panels_are_well_formed_and_use_the_provisioned_prometheus():
    board = dashboard()
    sources = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())["datasources"]
    by_uid = {source["uid"]: source for source in sources}
    assert by_uid["prometheus"]["type"] == "prometheus" and by_uid["prometheus"]["isDefault"]
    assert by_uid["alertmanager"]["type"] == "alertmanager"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] in by_uid, panel["title"]
        assert panel["description"], panel["title"]
        if panel["type"] == "row":  # a row heading groups the panels below it and queries nothing
            assert "targets" not in panel and panel["gridPos"]["w"] == 24, panel["title"]
            continue
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        assert panel["description"], panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_model_lifecycle_row_shows_the_trainer_metrics_below_it():
    board = dashboard()
    rows = [panel for panel in board["panels"] if panel["type"] == "row"]
    [lifecycle] = [row for row in rows if row["title"] == "Model lifecycle"]
    below = [p for p in board["panels"] if p["type"] != "row" and p["gridPos"]["y"] > lifecycle["gridPos"]["y"]]
    exprs = " ".join(t["expr"] for p in below for t in p["targets"])
    for metric in ("trainer_active_version", "trainer_gate_hit_rate", "trainer_cycle_seconds",
                   "trainer_last_success_timestamp_seconds", "trainer_cycles_total"):
        assert metric in exprs, metric
    above = [p for p in board["panels"] if p["type"] != "row" and p["gridPos"]["y"] < lifecycle["gridPos"]["y"]]
    assert not any("trainer_" in t["expr"] for p in above for t in p["targets"])


def test_provider_path_is_where_compose_mounts_the_dashboards():
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())["providers"][0]
    grafana = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
