"""A drifted stream through a real broker makes a real Prometheus fire StreamDrift, naming the feature.

Three steady minutes, then three with the rating distribution shifted, go through a Tansu topic (one
partition, so event time arrives in order) to `python -m data_parsing ingest` with one-minute windows;
Prometheus scrapes the parser every second with the committed rules (`for:` shortened to 0s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from db_utils import migrate
from tests.fixtures.drift_streams import drifted_lines
from tests.fixtures.kafka import create_topic, produce_lines
from tests.fixtures.log_streams import ROOT
from tests.fixtures.prometheus import (
    ALERT_RULES,
    PROMETHEUS_CONFIG,
    http_get,
    load_yaml,
    prometheus_test_config,
    run_prometheus,
    shorten_for,
)
from tests.fixtures.services import free_port, port_open, stop_process, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def firing(prometheus: str, alertname: str) -> list[dict]:
    """Labels of the alerts named `alertname` that are firing now."""
    alerts = json.loads(http_get(f"{prometheus}/api/v1/alerts"))["data"]["alerts"]
    return [a["labels"] for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def test_drifted_second_half_fires_stream_drift_on_rating(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"drift-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, partitions=1)
    produce_lines(kafka_bootstrap, topic, drifted_lines(per_window=1500, window_seconds=60, windows=3))
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url, "PARSER_METRICS_PORT": str(port),
           "KAFKA_GROUP_ID": topic, "PARSER_QUALITY_WINDOW_SECONDS": "60", "PARSER_BATCH_SECONDS": "0.2"}
    config = prometheus_test_config(load_yaml(PROMETHEUS_CONFIG), {"parser": [f"127.0.0.1:{port}"]}, "alerts.yml",
                                    None)
    log = (tmp_path / "parser.log").open("wb")
    parser = subprocess.Popen(
        [sys.executable, "-m", "data_parsing", "ingest", "--source", f"kafka://{kafka_bootstrap}/{topic}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: parser.poll() is None and port_open(port), timeout=30, what="parser metrics")
        with run_prometheus(config, tmp_path / "prometheus", shorten_for(load_yaml(ALERT_RULES), "0s")) as prom:
            wait_for(lambda: bool(firing(prom, "StreamDrift")), timeout=60, what="StreamDrift firing")
            features = {labels["feature"] for labels in firing(prom, "StreamDrift")}
            assert features == {"rating"}, (tmp_path / "parser.log").read_text()[-3000:]
            [labels] = firing(prom, "StreamDrift")
            assert (labels["severity"], labels["service"], labels["job"]) == ("warning", "parser", "parser")
    finally:
        stop_process(parser)
        log.close()
    windows = [json.loads(line) for line in (tmp_path / "parser.log").read_text().splitlines()
               if '"window"' in line]
    assert [w.get("drift") for w in windows[:5]] == ["unknown", "none", "none", "strong", "strong"], windows
