"""End to end: a real Prometheus and Alertmanager turn a dead service into a Slack message.

The service process is killed; Prometheus (committed rules, `for:` shortened) fires
RecommenderServiceDown; Alertmanager (committed routes, Slack URL file pointing at a local receiver,
timings shortened) posts a Slack-formatted JSON message, which the test reads. Then, with the service
still down, its latency alert is inhibited while an unrelated parser alert still reaches Slack.
"""

from __future__ import annotations

import json
import queue
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest

from tests.fixtures.monitored import real_service
from tests.fixtures.prometheus import (
    ALERT_RULES,
    ALERTMANAGER_CONFIG,
    PROMETHEUS_CONFIG,
    alertmanager_test_config,
    http_get,
    load_yaml,
    prometheus_test_config,
    query,
    run_alertmanager,
    run_prometheus,
    shorten_for,
)
from tests.fixtures.services import http_server, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@contextmanager
def slack_receiver() -> Iterator[tuple[str, queue.Queue]]:
    """A local HTTP server standing in for Slack's incoming webhook; yields (url, queue of JSON bodies)."""
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.put((self.path, self.headers.get("Content-Type"), body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    with http_server(Handler) as url:
        yield f"{url}/services/T000/B000/XXXX", received


def wait_for_message(received: queue.Queue, alertname: str, timeout: float) -> dict:
    """First Slack payload mentioning `alertname` within `timeout` seconds."""
    seen = []
    try:
        while True:
            path, content_type, body = received.get(timeout=timeout)
            payload = json.loads(body)
            seen.append(payload)
            if alertname in json.dumps(payload):
                return {"path": path, "content_type": content_type, "payload": payload}
    except queue.Empty:
        raise AssertionError(f"no Slack message about {alertname} within {timeout} s; got {seen}") from None


def post_alerts(alertmanager: str, alerts: list[tuple[str, str]]) -> None:
    """Send alerts (name, service) straight to Alertmanager's API, as Prometheus would."""
    body = [
        {
            "labels": {"alertname": name, "service": service, "severity": "warning"},
            "annotations": {"summary": f"{name} (test)", "description": "posted by the test"},
        }
        for name, service in alerts
    ]
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def alert_status(alertmanager: str, alertname: str) -> dict:
    """Alertmanager's status of one alert: state (active, suppressed) and what inhibits or silences it."""
    query_string = urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
    [alert] = json.loads(http_get(f"{alertmanager}/api/v2/alerts?{query_string}"))
    return alert["status"]


def drain(received: queue.Queue) -> list:
    """Every payload still queued."""
    payloads = []
    while not received.empty():
        payloads.append(json.loads(received.get_nowait()[2]))
    return payloads


def test_service_down_reaches_slack_and_inhibits_latency(tmp_path):
    with (
        slack_receiver() as (webhook, received),
        real_service(tmp_path / "service") as service,
    ):
        port = service.port
        url_file = tmp_path / "slack_webhook_url"
        url_file.write_text(webhook + "\n")
        am_config = alertmanager_test_config(load_yaml(ALERTMANAGER_CONFIG), str(url_file))
        with run_alertmanager(am_config, tmp_path / "alertmanager") as am:
            prom_config = prometheus_test_config(
                load_yaml(PROMETHEUS_CONFIG),
                {"service": [f"127.0.0.1:{port}"]},
                rule_file="alerts.yml",
                alertmanager=am.removeprefix("http://"),
            )
            rules = shorten_for(load_yaml(ALERT_RULES), "1s")
            with run_prometheus(prom_config, tmp_path / "prometheus", rules=rules) as prom:
                wait_for(
                    lambda: query(prom, 'up{job="service"} == 1')["data"]["result"] != [],
                    timeout=20,
                    what="first successful scrape",
                )
                assert received.empty(), "a healthy service must not page anyone"
                service.proc.terminate()
                service.proc.wait(timeout=30)
                message = wait_for_message(received, "RecommenderServiceDown", timeout=40)
                # While the service is down its latency alert is inhibited; a parser alert is not.
                post_alerts(am, [("RecommenderLatencyHigh", "recommender"), ("ParserRejectedLinesHigh", "parser")])
                wait_for_message(received, "ParserRejectedLinesHigh", timeout=20)
                latency = alert_status(am, "RecommenderLatencyHigh")
                assert latency["state"] == "suppressed" and latency["inhibitedBy"], latency
                assert alert_status(am, "ParserRejectedLinesHigh")["state"] == "active"
                assert "RecommenderLatencyHigh" not in json.dumps(drain(received))

    assert message["path"] == "/services/T000/B000/XXXX"
    assert message["content_type"] == "application/json"
    payload = message["payload"]
    assert payload["channel"] == "#recsys-alerts"
    [attachment] = payload["attachments"]
    assert attachment["title"].startswith("[FIRING:1] RecommenderServiceDown (recommender)")
    assert attachment["color"] == "danger"
    assert f"Recommender service 127.0.0.1:{port} is down" in attachment["text"]
