"""Gauges made once per registry: a new registry always gets gauges registered in it."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from evaluation.availability import gauges as availability_gauges
from evaluation.experiments.exporter import gauges as experiment_gauges
from evaluation.online import conversion_gauge
from evaluation.registry import PerRegistry


def test_one_result_per_registry() -> None:
    made: list[CollectorRegistry] = []
    per = PerRegistry(lambda r: made.append(r) or len(made))
    a, b = CollectorRegistry(), CollectorRegistry()
    assert (per(a), per(a), per(b), per(a)) == (1, 1, 2, 1)


def test_a_registry_at_a_dead_ones_address_gets_its_own_gauges() -> None:
    """Registries are made and dropped in a loop, so CPython hands out freed addresses again; keyed by
    ``id(registry)`` the new registry got the dead one's gauge, which it never exported."""
    for _ in range(50):
        registry = CollectorRegistry()
        conversion_gauge(registry).set(0.25)
        availability_gauges(registry)[0].set(0.5)
        experiment_gauges(registry)["srm"].labels("e").set(0.75)
        text = generate_latest(registry).decode()
        assert "online_conversion_rate 0.25" in text
        assert "online_availability_ratio 0.5" in text
        assert 'experiment_srm_p_value{experiment="e"} 0.75' in text
        del registry
        gc.collect()
