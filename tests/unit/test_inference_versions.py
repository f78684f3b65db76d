"""Serving model versions: the watcher's switch, the version's ranking config, X-Model-Version, exclusion
of a long history, provenance lines."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from inference.app import create_app
from inference.config import RankConfig, ServiceSettings
from inference.metrics import ServiceMetrics
from inference.provenance import ProvenanceLog, find_answer, read_lines
from inference.service import Recommender
from inference.versions import UNVERSIONED, rank_config_of
from tests.fixtures.inference import FakeHistory, FakeVectors


@dataclass
class Version:
    """The fields of `db_utils.model_versions.VersionRow` the service reads."""

    id: int
    rank_config: dict = field(default_factory=dict)
    content_collection: str = "movies"
    collab_collection: str | None = None

    @property
    def name(self) -> str:
        return f"v{self.id}"


class Versions:
    def __init__(self) -> None:
        self.active_version: Version | None = None
        self.up = True

    def active(self) -> Version | None:
        if not self.up:
            raise ConnectionError("the SQL store is down")
        return self.active_version


def settings(**overrides: object) -> ServiceSettings:
    base = {"popular_snapshot": "", "warm_neighbours": 0, "switch_warm": 0, "provenance_log": "",
            "model_poll_seconds": 3600.0}
    return ServiceSettings(**{**base, **overrides})  # type: ignore[arg-type]


def recommender(history: FakeHistory, content: FakeVectors, versions: Versions,
                per_version: dict[str, FakeVectors]) -> Recommender:
    return Recommender(settings(), history, lambda: content, ServiceMetrics.create(CollectorRegistry()),
                       versions=versions, version_vectors=lambda v, rank: per_version[v.name])


def test_the_watcher_switches_to_the_promoted_version_and_back():
    history = FakeHistory(histories={1: [("a", 5)]}, popular_list=[("p", 9)])
    content = FakeVectors(lists={"a": [("from+content", 0.9)]})
    v1 = FakeVectors(lists={"a": [("from+v1", 0.9)]})
    versions = Versions()
    rec = recommender(history, content, versions, {"v1": v1})
    assert rec.watcher.check() is False
    first = rec.recommend(1)
    assert first.version == UNVERSIONED and first.items[0].movie_id == "from+content"
    versions.active_version = Version(1)
    assert rec.watcher.check() is True
    answer = rec.recommend(1)
    assert answer.version == "v1" and answer.items[0].movie_id == "from+v1"
    versions.active_version = None
    assert rec.watcher.check() is True and rec.recommend(1).version == UNVERSIONED


def test_a_failing_version_lookup_keeps_the_model_in_use():
    history = FakeHistory(histories={1: [("a", 5)]}, popular_list=[("p", 9)])
    versions = Versions()
    versions.active_version = Version(1)
    rec = recommender(history, FakeVectors(), versions, {"v1": FakeVectors(lists={"a": [("b", 0.5)]})})
    rec.watcher.check()
    versions.up = False
    assert rec.watcher.check() is False and "down" in (rec.watcher.last_error or "")
    assert rec.recommend(1).version == "v1"


def test_a_request_answers_from_one_model_even_when_a_switch_lands_midway():
    """The model is taken once per request: swapping it while neighbours are fetched changes nothing."""
    history = FakeHistory(histories={1: [("a", 5)]}, popular_list=[("p", 9)])
    release, entered = threading.Event(), threading.Event()

    class Slow(FakeVectors):
        def neighbours(self, movie_ids, k):
            entered.set()
            release.wait(5)
            return super().neighbours(movie_ids, k)

    versions = Versions()
    rec = recommender(history, Slow(lists={"a": [("old", 0.9)]}), versions,
                      {"v2": FakeVectors(lists={"a": [("new", 0.9)]})})
    out: list = []
    thread = threading.Thread(target=lambda: out.append(rec.recommend(1)))
    thread.start()
    assert entered.wait(5)
    versions.active_version = Version(2)
    rec.watcher.check()
    release.set()
    thread.join(5)
    assert out[0].version == UNVERSIONED and out[0].items[0].movie_id == "old"
    assert rec.recommend(1).items[0].movie_id == "new"


def test_a_version_is_served_with_its_recorded_rank_config():
    version = Version(3, rank_config={"n_results": 2, "rating_weights": [0, 0, 0, 1, 1], "unknown": 1})
    config = rank_config_of(version, RankConfig())
    assert config.n_results == 2 and config.rating_weights == (0, 0, 0, 1, 1)
    assert rank_config_of(None, RankConfig(n_results=7)).n_results == 7


def test_a_version_reads_its_own_history_length_and_neighbour_count_whatever_the_service_env(monkeypatch):
    """What the gate scored is served: the history length and neighbours per movie a version recorded
    decide its answers even when the serving process's environment says otherwise; a version recorded
    before they were part of the ranking is served with the values of that time (50, 30)."""
    monkeypatch.setenv("RECOMMEND_HISTORY_SIZE", "1")
    monkeypatch.setenv("RECOMMEND_NEIGHBOURS_K", "1")
    reads: list[int] = []

    class Recording(FakeHistory):
        def recent_and_seen(self, user_id, recent, limit):
            reads.append(recent)
            return super().recent_and_seen(user_id, recent, limit)

    history = Recording(histories={1: [("a", 5), ("b", 4)]}, popular_list=[("p", 9)])
    lists = {"a": [("a1", 0.9), ("a2", 0.8), ("a3", 0.7)], "b": [("b1", 0.9), ("b2", 0.8)]}
    versions = Versions()
    rec = Recommender(settings(rank=RankConfig.from_env()), history, lambda: FakeVectors(lists=lists),
                      ServiceMetrics.create(CollectorRegistry()), versions=versions,
                      version_vectors=lambda v, rank: FakeVectors(lists=lists))
    unversioned = [s.movie_id for s in rec.recommend(1).items]
    assert reads[-1] == 1 and unversioned == ["a1", "p"]  # the environment's: 1 movie, 1 neighbour
    versions.active_version = Version(4, rank_config={"history_size": 2, "neighbours_k": 2})
    assert rec.watcher.check() is True
    served = rec.recommend(1)
    assert served.version == "v4" and reads[-1] == 2
    assert {s.movie_id for s in served.items} == {"a1", "a2", "b1", "b2", "p"}
    old = rank_config_of(Version(5, rank_config={"n_results": 20}), RankConfig.from_env())
    assert (old.history_size, old.neighbours_k) == (50, 30)


def test_no_watched_movie_comes_back_however_long_the_history(tmp_path):
    watched = [(f"w{i}", None) for i in range(600)]  # most recent first
    # the neighbours of the 50 ranked movies are old watches (positions 100..599) and one new movie
    lists = {f"w{i}": [(f"w{100 + i}", 0.99), (f"w{300 + i}", 0.98), ("fresh", 0.5)] for i in range(50)}
    popular = [(f"w{550 + i}", 100 - i) for i in range(50)] + [("pop", 1)]
    log = tmp_path / "provenance.log"
    app = create_app({"SETTINGS": settings(provenance_log=str(log)), "HISTORY_SOURCE": FakeHistory(
        histories={7: watched}, popular_list=popular), "VECTORS_FACTORY": lambda: FakeVectors(lists=lists)})
    client = app.test_client()
    response = client.get("/recommend/7")
    ids = response.get_data(as_text=True).split(",")
    assert ids[:2] == ["fresh", "pop"] and not set(ids) & {m for m, _ in watched}
    assert response.headers["X-Model-Version"] == UNVERSIONED
    doc = client.get("/recommend/7?format=json").get_json()
    assert doc["model_version"] == UNVERSIONED and doc["ids"] == ids
    batch = client.post("/recommend", json={"user_ids": [7]})
    assert batch.headers["X-Model-Version"] == UNVERSIONED and batch.get_json()["7"] == ids
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 3 and {line["version"] for line in lines} == {UNVERSIONED}
    assert lines[0]["user_id"] == 7 and lines[0]["ids"] == ids and lines[0]["request_id"]


def test_provenance_finds_the_last_answer_at_or_before_a_time(tmp_path):
    log = ProvenanceLog(str(tmp_path / "p.log"))
    log.write("r1", 5, "v1", "personalized", ["a"])
    log.write("r2", 6, "v1", "personalized", ["b"])
    time.sleep(0.002)  # the lines' clock has microseconds: keep `middle` strictly between them
    middle = datetime.now(UTC)
    time.sleep(0.002)
    log.write("r3", 5, "v2", "personalized", ["c"])
    with (tmp_path / "p.log").open("a") as fh:
        fh.write("not json\n")
    assert find_answer(read_lines(str(tmp_path / "p.log")), 5)["request_id"] == "r3"
    assert find_answer(read_lines(str(tmp_path / "p.log")), 5, middle)["version"] == "v1"
    assert find_answer(read_lines(str(tmp_path / "p.log")), 99) is None


def test_an_off_provenance_log_writes_nothing(tmp_path):
    ProvenanceLog("").write("r", 1, "v1", "personalized", ["a"])
    assert list(tmp_path.iterdir()) == []
