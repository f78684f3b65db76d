"""The service's caches: bounded LRU tied to a collection version, popular list with TTL and fallback."""

from __future__ import annotations

import pytest

from inference.cache import NeighbourCache, PopularCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lru_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = NeighbourCache(max_size=2)
    cache.put_many({"a": [("x", 0.1)], "b": [("y", 0.2)]})
    cache.get_many(["a"])  # a is now the most recent
    cache.put_many({"c": [("z", 0.3)]})
    found, missing = cache.get_many(["a", "b", "c"])
    assert set(found) == {"a", "c"} and missing == ["b"]
    assert len(cache) == 2


def test_version_is_checked_at_most_every_interval_and_a_change_drops_everything() -> None:
    clock = Clock()
    calls: list[str] = []
    version = {"v": "1"}

    def fetch() -> str:
        calls.append(version["v"])
        return version["v"]

    cache = NeighbourCache(max_size=10, check_seconds=5.0, clock=clock)
    assert cache.check_version(fetch) is False  # first look: nothing to drop
    cache.put_many({"a": [("x", 0.1)]})
    version["v"] = "2"
    clock.now += 1
    assert cache.check_version(fetch) is False  # too soon: not even asked
    assert len(calls) == 1 and len(cache) == 1
    clock.now += 5
    assert cache.check_version(fetch) is True
    assert len(cache) == 0 and cache.version == "2"
    clock.now += 5
    assert cache.check_version(fetch) is False  # same version: kept


def test_failing_version_check_propagates_and_is_retried() -> None:
    cache = NeighbourCache(max_size=10, check_seconds=5.0, clock=Clock())

    def boom() -> str:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        cache.check_version(boom)
    assert cache.check_version(lambda: "1") is False
    assert cache.version == "1"


def test_popular_list_is_reloaded_after_ttl_only() -> None:
    clock = Clock()
    loads: list[int] = []

    def load() -> list[tuple[str, int]]:
        loads.append(1)
        return [("a", len(loads))]

    cache = PopularCache(ttl_seconds=60, clock=clock)
    assert cache.get(load) == [("a", 1)]
    clock.now += 30
    assert cache.get(load) == [("a", 1)]
    clock.now += 31
    assert cache.get(load) == [("a", 2)]
    assert len(loads) == 2


def test_popular_list_survives_a_failing_store_and_the_store_is_not_hammered() -> None:
    clock = Clock()
    state = {"up": True, "calls": 0}

    def load() -> list[tuple[str, int]]:
        state["calls"] += 1
        if not state["up"]:
            raise ConnectionError("store down")
        return [("a", 3), ("b", 2)]

    cache = PopularCache(ttl_seconds=10, clock=clock)
    cache.get(load)
    state["up"] = False
    clock.now += 11
    with pytest.raises(ConnectionError):
        cache.get(load)
    assert cache.items == [("a", 3), ("b", 2)]
    assert "store down" in (cache.last_error or "")
    calls = state["calls"]
    clock.now += 1
    assert cache.get(load) == [("a", 3), ("b", 2)]  # within the retry window: old list, no call
    assert state["calls"] == calls
    state["up"] = True
    clock.now += 10
    assert cache.get(load) == [("a", 3), ("b", 2)]
    assert cache.last_error is None


def test_empty_popular_cache_retries_quickly() -> None:
    clock = Clock()
    cache = PopularCache(ttl_seconds=60, clock=clock)

    def down() -> list[tuple[str, int]]:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        cache.get(down)
    assert cache.get(down) == []  # retry window
    clock.now += 1.5
    assert cache.get(lambda: [("a", 1)]) == [("a", 1)]


def test_popular_snapshot_carries_the_list_to_a_new_process(tmp_path) -> None:
    path = str(tmp_path / "sub" / "popular.json")
    first = PopularCache(ttl_seconds=60, snapshot_path=path)
    first.get(lambda: [("a", 3), ("b", 2)])
    second = PopularCache(ttl_seconds=60, snapshot_path=path)  # a worker started while the store is down

    def down() -> list[tuple[str, int]]:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        second.get(down)
    assert second.items == [("a", 3), ("b", 2)]
    (tmp_path / "sub" / "popular.json").write_text("not json")
    assert PopularCache(ttl_seconds=60, snapshot_path=path).items == []


def test_neighbour_list_is_compact_and_iterates_as_pairs() -> None:
    from inference.cache import NeighbourList

    packed = NeighbourList([("".join(["a", "+1990"]), 0.5), ("b+1991", 0.25)])
    assert list(packed) == [("a+1990", 0.5), ("b+1991", 0.25)]
    assert packed[1] == ("b+1991", 0.25) and packed[:1] == [("a+1990", 0.5)] and len(packed) == 2
    assert packed == [("a+1990", 0.5), ("b+1991", 0.25)]
    other = NeighbourList([("".join(["a", "+1990"]), 0.1)])
    assert packed[0][0] is other[0][0]  # ids are interned: one string per movie across all lists
