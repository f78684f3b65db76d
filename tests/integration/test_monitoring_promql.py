"""Every PromQL expression of the dashboard and the alert rules, evaluated by a real Prometheus.

Prometheus scrapes the real service and parser while traffic flows; then each expression
must evaluate without error and return data. Alert expressions are checked in their `bool` form (the
comparison returns 0/1 instead of filtering) so a quiet alert still proves its inputs exist.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import urllib.request

import pytest

from tests.fixtures.prometheus import (
    ALERT_RULES,
    DASHBOARDS,
    PROMETHEUS_CONFIG,
    load_yaml,
    prometheus_test_config,
    query,
    run_prometheus,
)
from tests.fixtures.services import wait_for

TRAINING_RULES = ALERT_RULES.parent / "training.yml"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Metrics that only cAdvisor exports: no container runtime runs here, so expressions over them must
# parse and evaluate, but may return no data. Documented in docs/operations.md.
CONTAINER_METRICS = ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes")
MAY_BE_EMPTY = CONTAINER_METRICS

COMPARISON = re.compile(r"^(?P<lhs>.*\S)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<threshold>[0-9][0-9.eE+-]*)\s*$", re.DOTALL)


def bool_form(expr: str) -> str:
    """`X > 0.1` -> `X > bool 0.1`: returns 0/1 for every series instead of only the failing ones."""
    match = COMPARISON.match(expr.strip())
    if not match:
        raise ValueError(f"alert expression is not one comparison with a threshold: {expr}")
    return f"{match['lhs']} {match['op']} bool {match['threshold']}"


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every dashboard under monitoring/grafana/dashboards."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            found += [(panel["title"], target["expr"]) for target in panel.get("targets", [])]
    return found


def alert_expressions() -> list[tuple[str, str]]:
    """(alert name, expr) for every alert rule of the service, parser and trainer files (the experiment
    alerts' gauges come from the experiments exporter, evaluated in its own tests)."""
    return [(rule["alert"], rule["expr"]) for path in (ALERT_RULES, TRAINING_RULES)
            for group in load_yaml(path)["groups"] for rule in group["rules"] if "alert" in rule]


def test_bool_form_rewrites_the_last_comparison_only():
    assert bool_form("a / b > 0.01") == "a / b > bool 0.01"
    assert bool_form('up{job="x"} == 0') == 'up{job="x"} == bool 0'
    assert bool_form("time() - x > 300") == "time() - x > bool 300"
    with pytest.raises(ValueError, match="one comparison"):
        bool_form("rate(x[5m])")


def _traffic(port: int, stop: threading.Event) -> None:
    """Requests to the service until stopped (bounded: at most 5,000), cycling over user ids 0..199."""
    for i in range(5000):
        if stop.is_set():
            return
        user = "not-a-number" if i % 50 == 0 else str(i % 200)  # ids recur: cache hits as well as misses
        # A 400 for the invalid id is part of the traffic; a slow or refused answer must not end the loop.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/recommend/{user}", timeout=10).read()
        stop.wait(0.01)


def test_every_dashboard_and_alert_expression_evaluates_with_data(monitored_targets, tmp_path):
    config = prometheus_test_config(
        load_yaml(PROMETHEUS_CONFIG),
        {
            "service": [f"127.0.0.1:{monitored_targets['service'].port}"],
            "parser": [f"127.0.0.1:{monitored_targets['parser'].port}"],
            "online-evaluation": [f"127.0.0.1:{monitored_targets['online-evaluation'].port}"],
            "trainer": [f"127.0.0.1:{monitored_targets['trainer'].port}"],
        },
        rule_file="alerts.yml",
        alertmanager=None,
    )
    stop = threading.Event()
    sender = threading.Thread(target=_traffic, args=(monitored_targets["service"].port, stop), daemon=True)
    with run_prometheus(config, tmp_path / "prometheus", rules=load_yaml(ALERT_RULES)) as prom:
        sender.start()
        try:
            # rate() needs two scrapes after traffic began; wait until the slowest-filling series have data.
            for probe in (
                "sum(rate(flask_http_request_total[5m])) > 0",
                "sum(rate(parser_rejected_total[5m])) > 0",
                "sum(rate(neighbour_cache_hits_total[5m])) + sum(rate(neighbour_cache_misses_total[5m])) > 0",
                "online_conversion_rate >= 0",
                "count_over_time(trainer_cycle_seconds_count[1d]) > 1",  # increase() needs two scrapes
            ):
                wait_for(lambda p=probe: bool(query(prom, p)["data"]["result"]), timeout=30, what=probe)
            checks = [(f"panel {title!r}", expr) for title, expr in dashboard_expressions()]
            checks += [(f"alert {name}", bool_form(expr)) for name, expr in alert_expressions()]
            failures = []
            for where, expr in checks:
                answer = query(prom, expr)
                if answer["status"] != "success":
                    failures.append(f"{where}: {expr}: {answer.get('error')}")
                elif not answer["data"]["result"] and not any(m in expr for m in MAY_BE_EMPTY):
                    failures.append(f"{where}: {expr}: no data")
        finally:
            stop.set()
            sender.join(timeout=5)
    assert len(checks) >= 25
    assert any("trainer_" in expr for _, expr in checks)
    assert not failures, "\n".join(failures)


def test_a_broken_expression_is_reported(monitored_targets, tmp_path):
    """The check above can fail: a typo'd expression comes back as an error, an unknown metric as no data."""
    config = prometheus_test_config(
        load_yaml(PROMETHEUS_CONFIG),
        {"parser": [f"127.0.0.1:{monitored_targets['parser'].port}"]},
        rule_file="alerts.yml",
        alertmanager=None,
    )
    with run_prometheus(config, tmp_path / "prometheus", rules={"groups": []}) as prom:
        assert query(prom, "sum(rate(parser_events_total[5m])")["status"] == "error"
        wait_for(lambda: bool(query(prom, "parser_up")["data"]["result"]), timeout=20, what="first scrape")
        assert query(prom, "parser_events_totl")["data"]["result"] == []
