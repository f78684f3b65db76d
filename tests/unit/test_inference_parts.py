"""The service shell's parts on their own: dependency health, the held popular list, the /ready document."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from inference.cache import PopularCache
from inference.config import ServiceSettings
from inference.health import Health, classify, describe
from inference.metrics import ServiceMetrics
from inference.popular import PopularList
from inference.readiness import probe
from inference.service import Recommender
from tests.fixtures.inference import FakeHistory, FakeVectors


def test_health_writes_the_gauge_only_on_change_and_needs_a_popular_list():
    written: list[int] = []
    held = {"popular": True}
    health = Health(written.append, lambda: held["popular"])
    health.mark("sql", None)
    assert written == []  # a success after a success changes nothing
    health.mark("sql", ConnectionError("the SQL store is down\nsecond line"))
    assert written == [0] and health.state["sql"].error == "ConnectionError: the SQL store is down"
    health.mark("sql", ConnectionError("again"))
    assert written == [0]
    health.mark("sql", None)
    assert written == [0, 1]
    held["popular"] = False
    health.mark("vectors", TimeoutError("timed out"))
    health.mark("vectors", None)
    assert written == [0, 1, 0]  # all fine but no popular list: not ready


def test_classify_and_describe():
    assert classify(TimeoutError("read timed out"), "sql") == "timeout"
    assert classify(ConnectionError("refused"), "vectors") == "vectors"
    assert describe(ValueError("x" * 500)).startswith("ValueError: x") and len(describe(ValueError("x" * 500))) == 300


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_popular_list_loads_inline_then_refreshes_in_one_background_thread():
    calls: list[int] = []
    release = threading.Event()
    lists = [[("a", 3)], [("b", 9)]]

    def load():
        calls.append(1)
        if len(calls) > 1:
            assert release.wait(10)
        return lists[min(len(calls) - 1, 1)]

    clock = Clock()
    errors: list[BaseException] = []
    popular = PopularList(PopularCache(60.0, clock=clock), load, errors.append)
    assert list(popular.current()) == ["a"] and len(calls) == 1
    first = popular.current()
    assert popular.current() is first  # normalized once per list
    clock.now += 61
    assert list(popular.current()) == ["a"]  # stale: the held list, a reload in the background
    thread = popular.thread
    assert thread is not None and thread.is_alive()
    popular.current()
    assert popular.thread is thread  # one reload at a time
    release.set()
    thread.join(10)
    assert list(popular.current()) == ["b"] and errors == []


def test_popular_list_reports_a_failing_load_and_keeps_what_it_holds():
    state = {"up": True}

    def load():
        if not state["up"]:
            raise ConnectionError("down")
        return [("a", 1)]

    clock = Clock()
    errors: list[BaseException] = []
    popular = PopularList(PopularCache(60.0, clock=clock), load, errors.append)
    popular.current()
    state["up"] = False
    clock.now += 61
    popular.load_now()
    assert [type(e) for e in errors] == [ConnectionError] and list(popular.current()) == ["a"]


def recommender(history: FakeHistory, vectors: FakeVectors) -> Recommender:
    settings = ServiceSettings(popular_snapshot="", warm_neighbours=0, provenance_log="")
    return Recommender(settings, history, lambda: vectors, ServiceMetrics.create(CollectorRegistry()))


def test_ready_names_what_failed_and_degrades_while_a_popular_list_is_held():
    history = FakeHistory(popular_list=[("p", 5)])
    vectors = FakeVectors(lists={"a": [("b", 0.5)]})
    rec = recommender(history, vectors)
    doc = probe(rec)
    assert doc["status"] == "ready" and doc["checks"]["vectors"]["count"] == 1
    assert doc["checks"]["vectors"]["model_version"] == "content"
    vectors.up = False
    doc = probe(rec)
    assert doc["status"] == "degraded" and doc["reason"].startswith("vectors: ConnectionError")
    history.up = False
    assert probe(rec)["status"] == "degraded"  # the held list still answers every request


def test_ready_is_unavailable_without_any_popular_list():
    rec = recommender(FakeHistory(popular_list=[]), FakeVectors(lists={"a": []}))
    doc = probe(rec)
    assert doc["status"] == "unavailable" and "no popular list" in doc["reason"]
