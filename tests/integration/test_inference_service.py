"""The inference service on real dependencies: a SQLite store written by db_utils and a real ChromaDB
collection; through the Flask client, through gunicorn with 2 workers, and under dependency faults."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask

from inference.app import create_app
from inference.sources import open_vector_store
from tests.fixtures.chroma_server import ChromaServer, chroma_process_fixture  # noqa: F401 - fixture
from tests.fixtures.inference_server import Service, gunicorn_service
from tests.fixtures.inference_store import DemoStore, build_demo, chroma_client, vector_store_factory

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(tmp_path) -> DemoStore:
    return build_demo(str(tmp_path))


@pytest.fixture
def env(demo: DemoStore, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    values = {
        "DATABASE_URL": demo.database_url,
        "CHROMA_PATH": demo.chroma_path,
        "POPULAR_SNAPSHOT": str(tmp_path / "popular.json"),
        "VECTOR_STORE_FACTORY": vector_store_factory(),
        "ACCESS_LOG": "1",
        # ratings of 1-2 push their neighbours away (the former default weights; the shipped ones count
        # every watch positively, docs/evaluation.md): the push-away below is what is under test
        "RANK_RATING_WEIGHTS": "-1,-0.5,0.2,0.7,1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return values


@pytest.fixture
def real_app(env: dict[str, str]) -> Iterator[Flask]:
    yield create_app({"TESTING": True})


def ids_of(body: str) -> list[str]:
    return body.split(",") if body else []


def assert_line(body: str, watched: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    ids = ids_of(body)
    assert 0 < len(ids) <= 20 and len(ids) == len(set(ids)) and "\n" not in body
    assert not watched & set(ids)
    return ids


def test_flask_client_on_sqlite_and_embedded_chroma(real_app: Flask, demo: DemoStore) -> None:
    client = real_app.test_client()
    watched = {demo.clusters["action"][0], demo.clusters["action"][1], demo.clusters["horror"][0]}
    response = client.get("/recommend/1")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    ids = assert_line(response.get_data(as_text=True), watched)
    assert len(ids) == 20
    assert set(ids[:10]) == set(demo.clusters["action"][2:])  # liked cluster first
    assert not set(demo.clusters["horror"]) & set(ids)  # the 1-star movie's neighbours are pushed away
    doc = client.get("/recommend/1?format=json").get_json()
    assert doc["kind"] == "personalized" and doc["items"][0]["because"] in watched

    assert ids_of(client.get(f"/recommend/{demo.new_user}").get_data(as_text=True)) == demo.popular[:20]
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.get_json()
    info = client.get("/model/info").get_json()
    assert info["catalog_size"] == 96 and info["collection_versions"] == {"movies": "v1"}
    batch = client.post("/recommend", json={"user_ids": [1, demo.new_user]}).get_json()
    assert batch["1"] == ids


def test_collection_version_change_is_picked_up(real_app: Flask, demo: DemoStore) -> None:
    client = real_app.test_client()
    rec = real_app.extensions["recommender"]
    rec.warm_thread.join(timeout=30)
    assert len(rec.neighbour_cache) == 63  # every watched movie, warmed at start
    first = ids_of(client.get("/recommend/1").get_data(as_text=True))
    collection = chroma_client(demo.chroma_path).get_collection("movies")
    collection.modify(metadata={"version": "v2"})
    rec.neighbour_cache._checked_at = None  # the next request looks at the version again
    assert ids_of(client.get("/recommend/1").get_data(as_text=True)) == first
    assert rec.neighbour_cache.version == "v2"
    assert len(rec.neighbour_cache) == 3  # dropped, then user 1's three movies fetched again


@pytest.mark.slow
def test_gunicorn_two_workers_serve_the_contract(env: dict[str, str], demo: DemoStore, tmp_path) -> None:
    with gunicorn_service(env, workers=2, workdir=str(tmp_path)) as service:
        status, ctype, body = service.get("/recommend/1")
        assert status == 200 and ctype.startswith("text/plain")
        assert len(assert_line(body)) == 20
        for path, expected in [
            ("/recommend/abc", 400),
            ("/recommend/" + "9" * 10_000, 400),
            ("/recommend/%EF%BC%91", 400),
            ("/nope", 404),
        ]:
            status, ctype, body = service.get(path)
            assert status == expected and ctype.startswith("text/plain"), (path, status, body[:200])
            assert body.endswith(".") and "\n" not in body
        for _ in range(20):
            assert service.get(f"/recommend/{demo.new_user}")[0] == 200
        status, _, metrics = service.get("/metrics")
        assert status == 200
        assert 'flask_http_request_total{method="GET",status="200"}' in metrics
        assert "recommend_cold_start_total" in metrics and "recommend_latency_seconds_bucket" in metrics
        assert service.get("/ready")[0] == 200
        pids = {
            line.split("pid: ")[1].split()[0]
            for line in service.log().splitlines()
            if "Booting worker with pid" in line
        }
        assert len(pids) == 2
    assert service.proc.returncode == 0  # graceful shutdown on SIGTERM
    assert '"logger":"inference.access"' in service.log()


def hammer(service: Service, paths: list[str], stop: threading.Event, answers: list[tuple[int, str]]) -> None:
    """Send requests until told to stop (bounded by the test's own duration)."""
    deadline = time.monotonic() + 60
    i = 0
    while not stop.is_set() and time.monotonic() < deadline:
        status, _, body = service.get(paths[i % len(paths)])
        answers.append((status, body))
        i += 1


def run_under_traffic(service: Service, paths: list[str], fault, settle: float = 1.5) -> list[tuple[int, str]]:
    """Traffic from two threads; `fault()` is applied mid-way; returns every answer."""
    stop = threading.Event()
    answers: list[tuple[int, str]] = []
    threads = [threading.Thread(target=hammer, args=(service, paths, stop, answers)) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    fault()
    time.sleep(settle)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    return answers


@pytest.mark.slow
def test_deleting_the_sqlite_file_under_traffic_keeps_answering(env: dict[str, str], demo: DemoStore) -> None:
    """Open SQLite connections keep reading the deleted file; workers started afterwards (a reload
    here, a crash or a deploy in real life) find no store, and must answer from the popular snapshot."""
    db_path = demo.database_url.removeprefix("sqlite:///")
    paths = ["/recommend/1", f"/recommend/{demo.new_user}", "/recommend/101"]
    with gunicorn_service({**env, "READY_CACHE_SECONDS": "0"}, workers=2) as service:
        assert service.get("/ready")[0] == 200

        def delete_then_reload_workers() -> None:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db_path + suffix):
                    os.remove(db_path + suffix)
            service.proc.send_signal(signal.SIGHUP)  # new workers, old ones finish gracefully

        answers = run_under_traffic(service, paths, delete_then_reload_workers, settle=4.0)
        assert len(answers) > 20
        assert all(status == 200 for status, _ in answers), {s for s, _ in answers}
        assert all(len(assert_line(body)) == 20 for _, body in answers)
        status, _, body = service.get("/recommend/1")
        assert status == 200 and ids_of(body) == demo.popular[:20]
        status, _, ready = service.get("/ready")
        assert status == 503 and '"degraded"' in ready and "sql" in ready
        assert metric_value(service, 'recommend_fallback_total{reason="sql"}') > 0


def metric_value(service: Service, sample: str) -> float:
    """The value of one sample line of the service's /metrics (0 when absent)."""
    for line in service.get("/metrics")[2].splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_stopping_chroma_server_under_traffic_serves_popular_and_degrades(
    env: dict[str, str], demo: DemoStore, chroma_process: ChromaServer
) -> None:
    build_demo(
        os.path.dirname(demo.chroma_path), chroma=chroma_client(host=chroma_process.host, port=chroma_process.port)
    )
    server_env = {
        **env,
        "CHROMA_HOST": chroma_process.host,
        "CHROMA_PORT": str(chroma_process.port),
        "READY_CACHE_SECONDS": "0",
        "VECTOR_VERSION_CHECK_SECONDS": "0",
    }
    os.environ.update({"CHROMA_HOST": chroma_process.host, "CHROMA_PORT": str(chroma_process.port)})
    try:
        assert open_vector_store(vector_store_factory()).count() == 96
    finally:
        os.environ.pop("CHROMA_HOST")
        os.environ.pop("CHROMA_PORT")
    users = [f"/recommend/{u}" for u in (1, 100, 101, 102, 103, 104, 105)]
    with gunicorn_service(server_env, workers=2) as service:
        assert service.get("/ready")[0] == 200
        answers = run_under_traffic(service, users, chroma_process.stop)
        assert len(answers) > 20
        assert all(status == 200 for status, _ in answers), {s for s, _ in answers}
        assert all(0 < len(assert_line(body)) <= 20 for _, body in answers)
        status, _, body = service.get("/recommend/1")
        assert status == 200 and len(ids_of(body)) == 20
        status, _, ready = service.get("/ready")
        assert status == 503 and '"degraded"' in ready and "vectors" in ready
        assert metric_value(service, 'recommend_fallback_total{reason="vectors"}') > 0
