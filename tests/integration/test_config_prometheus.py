"""Prometheus and Alertmanager configuration, checked by promtool and amtool (Debian packages).

`promtool test rules` runs monitoring/prometheus/tests/*.yml; a structural test makes sure each alert
has a case where it fires and a case where it stays silent.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.fixtures.prometheus import (
    ALERT_RULES,
    ALERTMANAGER_CONFIG,
    MONITORING,
    PROMETHEUS_CONFIG,
    alertmanager_test_config,
    job_labels,
    job_targets,
    load_yaml,
    prometheus_test_config,
    shorten_for,
)
from tests.fixtures.services import require_binary
from tests.fixtures.tools import run

EXPERIMENT_RULES = MONITORING / "prometheus" / "experiments.yml"
TRAINING_RULES = MONITORING / "prometheus" / "training.yml"
FLEET_RULES = MONITORING / "prometheus" / "fleet.yml"
RULE_FILES = (ALERT_RULES, EXPERIMENT_RULES, TRAINING_RULES, FLEET_RULES)
RULE_TESTS = sorted((MONITORING / "prometheus" / "tests").glob("*.yml"))
REQUIRED_ALERTS = {
    "RecommenderServiceDown",
    "RecommenderSuccessRatioLow",
    "RecommenderLatencyHigh",
    "RecommenderFallbackHigh",
    "ParserDown",
    "ParserStalled",
    "StreamDrift",
    "ParserRejectedLinesHigh",
    "ContainerMemoryGrowing",
    "ExperimentTreatmentWorse",
    "ExperimentSampleRatioMismatch",
    "TrainerCycleFailing",
    "TrainerDown",
    "AvailabilityBelow99",
}


def alerts() -> dict[str, dict]:
    return {
        rule["alert"]: rule
        for path in RULE_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_promtool_checks_the_config_and_its_rules():
    promtool = require_binary("promtool")
    done = run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in done.stdout
    assert load_yaml(PROMETHEUS_CONFIG)["rule_files"] == [path.name for path in RULE_FILES]
    for path in RULE_FILES:
        done = run([promtool, "check", "rules", str(path)])
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("tests_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(tests_file):
    done = run([require_binary("promtool"), "test", "rules", str(tests_file)], cwd=tests_file.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_tests_can_fail(tmp_path):
    """A wrong expectation makes `promtool test rules` fail: the suites above prove something."""
    case = load_yaml(MONITORING / "prometheus" / "tests" / "service.yml")
    case["rule_files"] = [str(ALERT_RULES)]
    case["tests"] = [case["tests"][1]]  # the healthy service...
    case["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [
        {"exp_labels": {"severity": "critical"}}
    ]  # ...paging
    (tmp_path / "wrong.yml").write_text(yaml.safe_dump(case))
    done = run([require_binary("promtool"), "test", "rules", str(tmp_path / "wrong.yml")])
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case["alert_rule_test"]:
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) == REQUIRED_ALERTS
    assert REQUIRED_ALERTS - firing == set(), "alerts never shown to fire"
    assert REQUIRED_ALERTS - silent == set(), "alerts never shown to stay silent"


def test_alerts_carry_routing_labels_and_one_threshold():
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["service"], name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.search(r"(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$", rule["expr"].strip()), name
    assert "time() - parser_last_applied_timestamp_seconds > 300" in alerts()["ParserStalled"]["expr"]
    # two 6 h schedule periods and an hour of slack, counted only while cycles fail
    failing = alerts()["TrainerCycleFailing"]["expr"]
    assert failing.strip().endswith("> 46800") and 'trainer_cycles_total{status="failed"}' in failing
    assert alerts()["TrainerDown"]["expr"] == 'up{job="trainer"} == 0'
    assert alerts()["TrainerDown"]["for"] == "5m"


def test_scrape_targets_cover_the_stack():
    config = load_yaml(PROMETHEUS_CONFIG)
    targets = {job["job_name"]: job_targets(job) for job in config["scrape_configs"]}
    assert targets["service"] == ["service:8082"]
    assert targets["parser"] == ["parser:9102"]
    assert targets["trainer"] == ["trainer:9104"]
    assert targets["cadvisor"] == ["cadvisor:8080"]
    assert targets["alertmanager"] == ["alertmanager:9093"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # replicas: every address the compose name resolves to is a target of its own, labelled as one service
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, service in (("service", "recommender"), ("parser", "parser")):
        assert [sd["type"] for sd in jobs[name]["dns_sd_configs"]] == ["A"]
        assert job_labels(jobs[name]) == {"service": service}


def test_amtool_checks_the_alertmanager_config():
    done = run([require_binary("amtool"), "check-config", str(ALERTMANAGER_CONFIG)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_routes_to_slack_with_small_team_timings():
    config = load_yaml(ALERTMANAGER_CONFIG)
    route = config["route"]
    assert route["group_by"] == ["alertname", "service"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "4h")
    [receiver] = config["receivers"]
    [slack] = receiver["slack_configs"]
    assert slack["api_url_file"] == "/run/secrets/slack_webhook_url"
    assert "api_url" not in slack and "slack_api_url" not in config.get("global", {})
    assert "hooks.slack.com" not in ALERTMANAGER_CONFIG.read_text()
    down_inhibits = [
        rule
        for rule in config["inhibit_rules"]
        if rule["source_matchers"] == ['alertname="RecommenderServiceDown"']
    ]
    assert "RecommenderLatencyHigh" in down_inhibits[0]["target_matchers"][0]


def test_test_configs_derive_from_the_committed_ones():
    rules = shorten_for(load_yaml(ALERT_RULES), "1s")
    assert {rule["for"] for group in rules["groups"] for rule in group["rules"]} == {"1s"}
    assert {rule.get("for") for rule in alerts().values()} != {"1s"}, "the committed rules are left alone"
    config = prometheus_test_config(load_yaml(PROMETHEUS_CONFIG), {"service": ["127.0.0.1:1"]}, "r.yml", None)
    assert [job["job_name"] for job in config["scrape_configs"]] == ["service"]
    assert config["scrape_configs"][0]["static_configs"][0]["labels"] == {"service": "recommender"}
    am = alertmanager_test_config(load_yaml(ALERTMANAGER_CONFIG), "/tmp/url")
    assert am["receivers"][0]["slack_configs"][0]["api_url_file"] == "/tmp/url"
    assert am["route"]["group_by"] == ["alertname", "service"]
