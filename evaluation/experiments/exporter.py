"""Prometheus gauges of running experiments, set from a report (`evaluation.experiments.report`).

- ``experiment_treatment_worse{experiment}``: 1 when a treatment converts significantly worse than
  control (the report's ``treatment_worse``), else 0;
- ``experiment_srm_p_value{experiment}``: the sample-ratio-mismatch p-value (alert below 0.01);
- ``experiment_conversion_rate{experiment,arm,model_version}``: each arm's conversion rate over its
  judged users;
- ``experiment_users{experiment,arm}``: the users each arm served.

Cardinality stays bounded: one series per experiment and arm, and an update replaces the series of that
experiment (an arm that left the report, or a changed model version, loses its old series). A stopped
experiment's series go with `forget`. Alert rules: monitoring/prometheus/experiments.yml.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from evaluation.registry import PerRegistry

_NAMES = {
    "worse": ("experiment_treatment_worse", "1 when a treatment converts significantly worse than control",
              ("experiment",)),
    "srm": ("experiment_srm_p_value", "p-value of the sample-ratio-mismatch chi-square of users per arm",
            ("experiment",)),
    "conversion": ("experiment_conversion_rate", "Share of an arm's judged users who watched a recommended "
                   "movie within the window", ("experiment", "arm", "model_version")),
    "users": ("experiment_users", "Users an experiment's arm served", ("experiment", "arm")),
}
gauges: PerRegistry[dict[str, Gauge]] = PerRegistry(lambda registry: {
    k: Gauge(name, doc, labels, registry=registry) for k, (name, doc, labels) in _NAMES.items()})
"""The four gauges in a registry (created once per registry)."""
# Per registry (weakly held, as `gauges`): the label sets each experiment has set in it.
_series: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, list[tuple[str, tuple[str, ...]]]]] = \
    weakref.WeakKeyDictionary()


def forget(experiment: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Remove every series of ``experiment`` from ``registry``."""
    g = gauges(registry)
    for kind, labels in _series.get(registry, {}).pop(experiment, []):
        g[kind].remove(*labels)


def update_gauges(report: Mapping[str, Any], registry: CollectorRegistry = REGISTRY) -> None:
    """Set the experiment's gauges from ``report``, replacing its previous series."""
    experiment = str(report["experiment"])
    forget(experiment, registry)
    g = gauges(registry)
    series: list[tuple[str, tuple[str, ...]]] = []

    def put(kind: str, labels: tuple[str, ...], value: float) -> None:
        g[kind].labels(*labels).set(value)
        series.append((kind, labels))

    put("worse", (experiment,), 1.0 if report["treatment_worse"] else 0.0)
    put("srm", (experiment,), float(report["srm"]["p_value"]))
    for arm, m in report["arms"].items():
        put("conversion", (experiment, arm, str(m["model_version"] or "")), float(m["conversion_rate"]))
        put("users", (experiment, arm), float(m["users"]))
    _series.setdefault(registry, {})[experiment] = series
