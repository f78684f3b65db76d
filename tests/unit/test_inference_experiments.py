"""Serving an experiment: each user's arm by `core.assignment`, X-Model-Version of the arm, experiment and
arm in JSON and provenance, per-arm answer counts, an experiment started and stopped at the next poll."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from core.assignment import assign
from inference.app import create_app
from inference.config import ServiceSettings
from inference.metrics import ServiceMetrics
from inference.service import Recommender
from tests.fixtures.inference import FakeHistory, FakeVectors


@dataclass
class Version:
    id: int
    rank_config: dict = field(default_factory=dict)
    content_collection: str = "movies"
    collab_collection: str | None = "collab"

    @property
    def name(self) -> str:
        return f"v{self.id}"


@dataclass
class Experiment:
    """The fields of `db_utils.experiments.ExperimentRow` the service reads."""

    id: int
    name: str
    arms: list[dict]

    @property
    def assignment_key(self) -> str:
        return self.name

    @property
    def shares(self) -> list[tuple[str, float]]:
        return [(a["arm"], a["share"]) for a in self.arms]


class Store:
    """A VersionSource with an active version and, optionally, a running experiment."""

    def __init__(self) -> None:
        self.active_version: Version | None = Version(1)
        self.running: Experiment | None = None
        self.up = True
        self.polls = 0

    def active(self) -> Version | None:
        return self.active_version

    def experiment(self):
        self.polls += 1
        if not self.up:
            raise ConnectionError("the SQL store is down")
        if self.running is None:
            return None
        return self.running, {int(a["version_id"]): Version(int(a["version_id"])) for a in self.running.arms
                              if a["arm"] != "control"}


def two_arms(name: str = "ab", share: float = 0.5) -> Experiment:
    return Experiment(7, name, [{"arm": "control", "version_id": 1, "share": 1 - share},
                                {"arm": "treatment", "version_id": 2, "share": share}])


def settings(**overrides: object) -> ServiceSettings:
    base = {"popular_snapshot": "", "warm_neighbours": 0, "switch_warm": 0, "provenance_log": "",
            "model_poll_seconds": 3600.0}
    return ServiceSettings(**{**base, **overrides})  # type: ignore[arg-type]


HISTORY = FakeHistory(histories={u: [("a", 5)] for u in range(50)}, popular_list=[("p", 9)])
PER_VERSION = {"v1": FakeVectors(lists={"a": [("from+v1", 0.9)]}), "v2": FakeVectors(lists={"a": [("from+v2", 0.9)]})}


def recommender(store: Store) -> Recommender:
    return Recommender(settings(), HISTORY, lambda: FakeVectors(), ServiceMetrics.create(CollectorRegistry()),
                       versions=store, version_vectors=lambda v, rank: PER_VERSION[v.name])


def test_each_user_is_answered_by_their_arm_and_outside_an_experiment_by_the_active_version():
    store = Store()
    rec = recommender(store)
    rec.watcher.check()
    assert rec.experiment is None
    plain = rec.recommend(3)
    assert (plain.version, plain.experiment, plain.arm) == ("v1", None, None)
    store.running = two_arms()
    rec.watcher.check()
    arms = {u: assign("ab", u, [("control", 0.5), ("treatment", 0.5)]) for u in range(50)}
    assert set(arms.values()) == {"control", "treatment"}
    for user, arm in arms.items():
        answer = rec.recommend(user)
        version = "v1" if arm == "control" else "v2"
        assert (answer.experiment, answer.arm, answer.version) == ("ab", arm, version)
        assert answer.items[0].movie_id == f"from+{version}"  # the arm's own vectors, never a mix
    many = rec.recommend_many(list(range(50)))
    assert list(many) == list(range(50))
    assert all(many[u].arm == arms[u] and many[u].version == ("v1" if arms[u] == "control" else "v2")
               for u in range(50))
    cold = rec.recommend(10_000_019)  # no history: assigned all the same
    assert cold.kind == "cold_start" and cold.arm == assign("ab", 10_000_019, [("control", .5), ("treatment", .5)])
    store.running = None
    rec.watcher.check()
    assert rec.experiment is None and rec.recommend(3).arm is None


def test_a_new_experiment_reassigns_independently_and_a_failed_poll_keeps_the_one_in_use():
    store = Store()
    store.running = two_arms("first")
    rec = recommender(store)
    rec.watcher.check()
    first = rec.experiment
    rec.watcher.check()
    assert rec.experiment is first  # unchanged: not rebuilt
    store.up = False
    assert rec.watcher.check() is False and rec.experiment is first and rec.watcher.last_error
    store.up = True
    store.running = Experiment(8, "second", two_arms().arms)
    rec.watcher.check()
    assert rec.experiment is not first and rec.experiment.name == "second"
    moved = sum(assign("first", u, [("control", .5), ("treatment", .5)]) != rec.recommend(u).arm
                for u in range(50))
    assert 0 < moved < 50


def test_routes_say_which_arm_answered_and_count_answers_per_arm(tmp_path):
    store = Store()
    store.running = two_arms("ab", 0.5)
    log = tmp_path / "provenance.log"
    app = create_app({"SETTINGS": settings(provenance_log=str(log)), "HISTORY_SOURCE": HISTORY,
                      "VECTORS_FACTORY": lambda: FakeVectors(), "VERSION_SOURCE": store,
                      "VERSION_VECTORS": lambda v, rank: PER_VERSION[v.name]})
    client = app.test_client()
    arms = {u: assign("ab", u, [("control", 0.5), ("treatment", 0.5)]) for u in range(20)}
    for user, arm in arms.items():
        response = client.get(f"/recommend/{user}")
        assert response.headers["X-Model-Version"] == ("v1" if arm == "control" else "v2")
        doc = client.get(f"/recommend/{user}?format=json").get_json()
        assert doc["experiment"] == "ab" and doc["arm"] == arm and doc["model_version"] == response.headers[
            "X-Model-Version"]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 40 and all(line["arm"] == arms[line["user_id"]] and line["experiment"] == "ab"
                                    for line in lines)
    registry = app.extensions["recommender"].metrics.registry
    treated = 2 * sum(1 for a in arms.values() if a == "treatment")
    assert registry.get_sample_value("recommend_answers_total", {"arm": "treatment", "model_version": "v2"}) \
        == treated
    assert registry.get_sample_value("recommend_answers_total", {"arm": "control", "model_version": "v1"}) \
        == 40 - treated
    info = client.get("/model/info").get_json()
    assert info["experiment"] == {"name": "ab", "arms": {"control": "v1", "treatment": "v2"}}
    store.running = None
    app.extensions["recommender"].watcher.check()
    assert client.get("/model/info").get_json()["experiment"] is None
    doc = client.get("/recommend/1?format=json").get_json()
    assert doc["experiment"] is None and doc["arm"] is None and doc["model_version"] == "v1"
    assert registry.get_sample_value("recommend_answers_total", {"arm": "none", "model_version": "v1"}) == 1
    assert "experiment" not in json.loads(log.read_text().splitlines()[-1])


def test_arm_labels_stay_bounded_whatever_the_store_names_them():
    metrics = ServiceMetrics.create(CollectorRegistry())
    metrics.count_answer("treatment-b", "v3")
    metrics.count_answer(None, "v1")
    labels = {s.labels["arm"] for m in metrics.registry.collect() if m.name == "recommend_answers"
              for s in m.samples}
    assert labels == {"treatment", "none"}
