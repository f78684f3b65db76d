"""evaluation.experiments.exporter: gauges set from a report, read back from the registry."""

from __future__ import annotations

import copy

from prometheus_client import CollectorRegistry, generate_latest

from evaluation.experiments.exporter import forget, update_gauges
from evaluation.experiments.report import build_report
from evaluation.experiments.synthetic import simulate

ARMS = [("control", 0.5), ("treatment", 0.5)]


def a_report(experiment: str = "exp-1", worse: bool = True) -> dict:
    rates = {"control": 0.16, "treatment": 0.10} if worse else {"control": 0.10, "treatment": 0.10}
    data = simulate(experiment, ARMS, rates, 2000, seed=1, versions={"control": "v1", "treatment": "v2"})
    return build_report(experiment, "control", ARMS, data.served, data.watched, data.ratings, as_of=data.as_of)


def test_gauges_read_back_as_the_report_says():
    registry, report = CollectorRegistry(), a_report()
    update_gauges(report, registry)
    value = registry.get_sample_value
    assert value("experiment_treatment_worse", {"experiment": "exp-1"}) == 1.0
    assert value("experiment_srm_p_value", {"experiment": "exp-1"}) == report["srm"]["p_value"]
    for arm, version in (("control", "v1"), ("treatment", "v2")):
        labels = {"experiment": "exp-1", "arm": arm, "model_version": version}
        assert value("experiment_conversion_rate", labels) == report["arms"][arm]["conversion_rate"]
        assert value("experiment_users", {"experiment": "exp-1", "arm": arm}) == report["arms"][arm]["users"]
    assert b'experiment_conversion_rate{arm="treatment",experiment="exp-1",model_version="v2"}' in \
        generate_latest(registry)


def test_an_update_replaces_the_experiments_series_and_leaves_others():
    registry = CollectorRegistry()
    update_gauges(a_report("exp-1"), registry)
    update_gauges(a_report("exp-2", worse=False), registry)
    changed = copy.deepcopy(a_report("exp-1"))
    changed["arms"]["treatment"]["model_version"] = "v3"
    update_gauges(changed, registry)
    value = registry.get_sample_value
    assert value("experiment_conversion_rate", {"experiment": "exp-1", "arm": "treatment", "model_version": "v2"}) \
        is None
    assert value("experiment_conversion_rate", {"experiment": "exp-1", "arm": "treatment", "model_version": "v3"}) \
        is not None
    assert value("experiment_treatment_worse", {"experiment": "exp-2"}) == 0.0
    forget("exp-1", registry)
    assert value("experiment_treatment_worse", {"experiment": "exp-1"}) is None
    assert value("experiment_users", {"experiment": "exp-2", "arm": "control"}) is not None


def test_a_new_registry_gets_its_own_gauges():
    for _ in range(3):  # a dropped registry's address may be reused: each new one must start afresh
        registry = CollectorRegistry()
        update_gauges(a_report("exp-1", worse=False), registry)
        assert registry.get_sample_value("experiment_treatment_worse", {"experiment": "exp-1"}) == 0.0
        del registry
