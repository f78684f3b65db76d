"""The neighbour cache is bounded in bytes and reports its size in /ready and /metrics."""

from __future__ import annotations

from flask.testing import FlaskClient

from inference.cache import NeighbourCache, NeighbourList
from tests.fixtures.inference import (  # noqa: F401 - fixtures
    app_fixture,
    client_fixture,
    sources_fixture,
)
from tests.unit.test_inference_app import metric


def lists(count: int, neighbours: int = 40) -> dict[str, list[tuple[str, float]]]:
    return {f"m{i}": [(f"n{(i + j) % 60}", 0.5) for j in range(neighbours)] for i in range(count)}  # 60 ids


def test_the_cache_evicts_the_least_recently_used_beyond_its_bytes() -> None:
    one = NeighbourList(lists(1)["m0"]).nbytes
    cache = NeighbourCache(max_size=1000, max_bytes=200 * one)
    cache.put_many(lists(100))
    assert len(cache) == 100 and cache.nbytes <= cache.max_bytes
    cache.get_many(["m0"])  # the most recent now
    cache.put_many({f"x{i}": v for i, v in enumerate(lists(100).values())})
    assert cache.nbytes <= cache.max_bytes and len(cache) < 200
    found, _ = cache.get_many(["m0", "m1"])
    assert "m0" in found and "m1" not in found


def test_lists_share_one_id_table_and_a_table_too_large_starts_again() -> None:
    cache = NeighbourCache(max_size=10_000, max_bytes=400_000)
    packed = cache.put_many({"a": [("x", 0.1), ("y", 0.2)], "b": [("y", 0.3)]})
    assert packed["a"].table is packed["b"].table is cache.table and len(cache.table) == 2
    first = cache.table
    for start in range(0, 3000, 100):  # a churn of ids the evicted lists leave behind in the table
        cache.put_many({f"m{i}": [(f"id-{i}-{j}", 0.5) for j in range(5)] for i in range(start, start + 100)})
        assert cache.nbytes <= cache.max_bytes
    assert cache.table is not first and cache.table.nbytes <= cache.max_bytes // 2


def test_lists_packed_before_a_drop_are_not_stored_over_the_new_table() -> None:
    cache = NeighbourCache(max_size=10)
    stale = NeighbourList([("x", 0.1)], cache.table)
    cache.clear()
    cache.put_many({"a": stale})
    found, _ = cache.get_many(["a"])
    assert found["a"].table is cache.table and list(found["a"]) == list(stale)


def test_ready_and_metrics_report_the_cache_bytes(client: FlaskClient) -> None:
    assert client.get("/recommend/1").status_code == 200
    caches = client.get("/ready").get_json()["checks"]["caches"]
    assert caches["neighbour_bytes"] > 0 and caches["neighbour_bytes_capacity"] == 64 * 1024 * 1024
    assert metric(client, "neighbour_cache_bytes") == caches["neighbour_bytes"]
