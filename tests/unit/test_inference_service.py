"""Recommender's shell behaviour that the HTTP tests do not reach: the popular list's background reload
and the collector freeze after the neighbour warm-up."""

from __future__ import annotations

import gc
import threading

from prometheus_client import CollectorRegistry

from inference.config import ServiceSettings
from inference.metrics import ServiceMetrics
from inference.service import Recommender
from tests.fixtures.inference import FakeHistory, FakeVectors, demo_sources


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowPopular(FakeHistory):
    """popular() blocks until released, as a long scan of `watched` would."""

    def __init__(self, first: list[tuple[str, int]]) -> None:
        super().__init__(popular_list=list(first))
        self.release = threading.Event()
        self.slow = False

    def popular(self, limit: int) -> list[tuple[str, int]]:
        if self.slow:
            assert self.release.wait(10), "the test never released the reload"
        return super().popular(limit)


def recommender(history: FakeHistory, vectors: FakeVectors, clock: Clock, **settings: object) -> Recommender:
    options = {"popular_snapshot": "", "warm_neighbours": 0, "popular_ttl_seconds": 60.0, **settings}
    return Recommender(ServiceSettings(**options), history, lambda: vectors,  # type: ignore[arg-type]
                       ServiceMetrics.create(CollectorRegistry()), clock=clock)


def test_a_stale_popular_list_is_reloaded_in_the_background_while_the_held_one_is_served():
    history = SlowPopular([("old+1990", 10)])
    clock = Clock()
    rec = recommender(history, FakeVectors(), clock)
    assert list(rec.popular()) == ["old+1990"]  # the first load happens inline: nothing is held yet

    history.popular_list, history.slow = [("new+2000", 20)], True
    clock.now += 61
    assert list(rec.popular()) == ["old+1990"]  # stale: answered at once from what is held
    assert list(rec.popular()) == ["old+1990"]
    thread = rec.popular_thread
    assert thread is not None and thread.is_alive()
    history.release.set()
    thread.join(timeout=10)
    assert rec.popular_thread is thread  # one reload thread at a time, not one per request
    assert list(rec.popular()) == ["new+2000"]


def test_a_failing_background_reload_keeps_the_list_and_marks_the_store():
    history = FakeHistory(popular_list=[("a+1990", 3)])
    clock = Clock()
    rec = recommender(history, FakeVectors(), clock)
    rec.popular()
    history.up = False
    clock.now += 61
    assert list(rec.popular()) == ["a+1990"]
    rec.popular_thread.join(timeout=10)
    assert rec.state["sql"].ok is False and "down" in rec.state["sql"].error
    assert list(rec.popular()) == ["a+1990"]


def test_the_warmed_neighbour_cache_is_frozen_out_of_the_collector():
    history, vectors = demo_sources()
    gc.unfreeze()
    try:
        rec = recommender(history, vectors, Clock(), warm_neighbours=10)
        rec.warm(background=False)
        assert len(rec.neighbour_cache) > 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
