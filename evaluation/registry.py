"""Metrics made once per Prometheus registry, the one rule every exporter in `evaluation` shares.

A registry is held weakly: when a test's registry is dropped its metrics go with it, and a new registry
allocated at the same address starts afresh (keying by ``id(registry)`` handed such a registry the dead
one's gauges, which it never exported).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry

T = TypeVar("T")


class PerRegistry(Generic[T]):
    """``make(registry)`` called once per registry; later calls with the same registry return its result."""

    def __init__(self, make: Callable[[CollectorRegistry], T]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[CollectorRegistry, T] = weakref.WeakKeyDictionary()

    def __call__(self, registry: CollectorRegistry = REGISTRY) -> T:
        if registry not in self._made:
            self._made[registry] = self._make(registry)
        return self._made[registry]
