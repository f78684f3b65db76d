"""Experiments in the SQL store (SQLite and PostgreSQL): at most one running, stop, by name; the report
recomputed from the served lists and watches; the canary rule promoting a treatment whose users convert
more and aborting one whose users convert less, with the active version unchanged and the gauges set."""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from core.assignment import assign
from db_utils import experiments as ex
from db_utils import model_versions as mv
from db_utils.models import Experiment, Movie, RecommendationServed, User, Watched
from training import experiments
from training.__main__ import _canary_tick
from training.metrics import TrainerMetrics

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 12, 0, 0)


def versions(engine: Engine, count: int = 3) -> list[int]:
    """`count` versions with vectors, the first active."""
    ids = []
    with engine.begin() as conn:
        for _ in range(count):
            vid = mv.create_version(conn, content_collection="movies", rank_config={}, collab_config={},
                                    code_revision="test", model_fingerprint="f", now=T0)
            mv.update_version(conn, vid, collab_collection=f"collab_v{vid}")
            ids.append(vid)
        mv.activate(conn, ids[0], event="promote", reason="test", now=T0)
    return ids


def stream(engine: Engine, name: str, shares: list[tuple[str, float]], rates: dict[str, float],
           users: int = 3000, seed: int = 1) -> None:
    """One served list per user an hour after T0; its user watches one of its movies within the window
    with their arm's rate; one late watch moves the store's clock past every window."""
    rng = random.Random(seed)
    movies = [f"m{i}" for i in range(20)]
    served, watched = [], []
    for user in range(1, users + 1):
        ts = T0 + timedelta(hours=1, seconds=user)
        listed = rng.sample(movies, 5)
        served.append({"user_id": user, "ts": ts, "server": "s", "status": 200, "latency_ms": 12.0,
                       "movie_ids": ",".join(listed)})
        if rng.random() < rates[assign(name, user, shares)]:
            watched.append({"user_id": user, "movie_id": listed[0], "max_minute": 90,
                            "first_ts": ts + timedelta(hours=2), "last_ts": ts + timedelta(hours=3)})
    watched.append({"user_id": 1, "movie_id": "late", "max_minute": 5, "first_ts": T0 + timedelta(days=3),
                    "last_ts": T0 + timedelta(days=3)})
    with engine.begin() as conn:
        conn.execute(User.__table__.insert(), [{"id": u} for u in range(1, users + 1)])
        conn.execute(Movie.__table__.insert(), [{"id": m} for m in [*movies, "late"]])
        conn.execute(RecommendationServed.__table__.insert(), served)
        conn.execute(Watched.__table__.insert(), watched)


def test_at_most_one_experiment_runs_and_a_stopped_one_keeps_its_decision(store_engine):
    v1, v2, v3 = versions(store_engine)
    with store_engine.begin() as conn:
        row = ex.start(conn, name="ab", control_version_id=v1, arms=ex.build_arms(v1, v2, 0.3), now=T0)
        assert ex.running(conn) == row and row.shares == [("control", 0.7), ("treatment", 0.3)]
        assert row.treatment_version_id == v2 and row.as_dict()["arms"][1]["version"] == f"v{v2}"
        with pytest.raises(ValueError, match="is running"):
            ex.start(conn, name="other", control_version_id=v1, arms=ex.build_arms(v1, v3, 0.5), now=T0)
    with pytest.raises(IntegrityError), store_engine.begin() as conn:  # the index guards a racing start
        conn.execute(Experiment.__table__.insert().values(name="race", status="running", control_version_id=v1,
                                                          arms="[]", is_canary=False, started_at=T0))
    with store_engine.begin() as conn:
        ex.stop(conn, row.id, decision="stopped", reason="by hand", now=T0 + timedelta(days=1))
        assert ex.running(conn) is None
        done = ex.by_name(conn, "ab")
        assert (done.status, done.decision, done.stopped_at) == ("stopped", "stopped", T0 + timedelta(days=1))
        with pytest.raises(ValueError, match="exists already"):
            ex.start(conn, name="ab", control_version_id=v1, arms=ex.build_arms(v1, v3, 0.5), now=T0)
        second = ex.start(conn, name="ab2", control_version_id=v1, arms=ex.build_arms(v1, v3, 0.5), now=T0)
        assert ex.latest(conn) == second
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="share"):
            ex.build_arms(v1, v2, bad)
    with pytest.raises(ValueError, match="already the active"):
        ex.build_arms(v1, v1, 0.5)


def start_canary(engine: Engine, treatment: int, share: float = 0.3) -> str:
    doc = experiments.start(engine, f"v{treatment}", share, T0, name="canary", canary=True, min_users=300,
                            max_days=14)
    return doc["started"]["name"]


SHARES = [("control", 0.7), ("treatment", 0.3)]


def test_the_canary_promotes_a_treatment_whose_users_convert_more(store_engine):
    _, v2, _ = versions(store_engine)
    name = start_canary(store_engine, v2)
    stream(store_engine, name, SHARES, {"control": 0.30, "treatment": 0.45})
    registry = CollectorRegistry()
    doc = experiments.apply_canary(store_engine, T0 + timedelta(days=4), registry)
    assert doc["decision"] == "promote" and doc["p_value"] < 0.05 and doc["difference"] > 0, doc
    with store_engine.connect() as conn:
        assert mv.active_version(conn).id == v2
        assert mv.activations(conn)[-1]["event"] == "canary"
        row = ex.by_name(conn, name)
        report = experiments.report_of(conn, row)
    assert (row.status, row.decision) == ("stopped", "promoted")
    assert experiments.apply_canary(store_engine, T0 + timedelta(days=5), registry) is None
    assert registry.get_sample_value("experiment_treatment_worse", {"experiment": name}) == 0.0
    # the report of the stopped experiment is the same on every reading of the store
    assert report["arms"]["treatment"]["model_version"] == f"v{v2}" and not report["srm"]["mismatch"]
    with store_engine.connect() as conn:
        assert experiments.report_of(conn, ex.by_name(conn, name)) == report


def test_the_canary_aborts_a_worse_treatment_and_the_active_version_stays(store_engine, caplog, capsys):
    v1, v2, v3 = versions(store_engine)
    name = start_canary(store_engine, v2)
    stream(store_engine, name, SHARES, {"control": 0.45, "treatment": 0.30})
    metrics = TrainerMetrics.create()
    registry = metrics.registry
    with caplog.at_level(logging.ERROR, logger="training.experiments"):
        _canary_tick(store_engine, metrics)  # what `training run --every` does before each cycle
    doc = json.loads(capsys.readouterr().out)["canary"]
    assert doc["decision"] == "abort" and "worse" in doc["reason"], doc
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == ["canary aborted"]
    with store_engine.connect() as conn:
        assert mv.active_version(conn).id == v1
        assert [a["event"] for a in mv.activations(conn)] == ["promote"]
        row = ex.by_name(conn, name)
    assert (row.status, row.decision) == ("stopped", "aborted")
    assert registry.get_sample_value("experiment_treatment_worse", {"experiment": name}) == 1.0
    _canary_tick(store_engine, metrics)  # nothing runs: the abort stays alerted
    assert registry.get_sample_value("experiment_treatment_worse", {"experiment": name}) == 1.0
    experiments.start(store_engine, f"v{v3}", 0.5, T0 + timedelta(days=5), name="next")
    _canary_tick(store_engine, metrics)  # the next experiment replaces the aborted one's series
    assert registry.get_sample_value("experiment_treatment_worse", {"experiment": name}) is None
    assert registry.get_sample_value("experiment_srm_p_value", {"experiment": "next"}) == 1.0


def test_a_canary_without_enough_users_waits(store_engine):
    v1, v2, _ = versions(store_engine)
    name = start_canary(store_engine, v2)
    stream(store_engine, name, SHARES, {"control": 0.4, "treatment": 0.4}, users=200)
    assert experiments.apply_canary(store_engine, T0 + timedelta(days=4))["decision"] == "wait"
    with store_engine.connect() as conn:
        assert ex.running(conn).name == name and mv.active_version(conn).id == v1
    # past max_days without a promotion it is aborted
    assert experiments.apply_canary(store_engine, T0 + timedelta(days=15))["decision"] == "abort"


def test_an_experiment_whose_control_is_no_longer_active_is_stopped(store_engine):
    _, v2, v3 = versions(store_engine)
    experiments.start(store_engine, f"v{v2}", 0.5, T0, name="ab")
    assert experiments.apply_canary(store_engine, T0 + timedelta(hours=1))["decision"] == "none"  # not a canary
    with store_engine.begin() as conn:
        mv.activate(conn, v3, event="promote", reason="a cycle promoted", now=T0 + timedelta(hours=2))
    doc = experiments.apply_canary(store_engine, T0 + timedelta(hours=3))
    assert doc["decision"] == "stopped" and f"v{v3}" in doc["reason"]
    with store_engine.connect() as conn:
        assert ex.running(conn) is None and ex.by_name(conn, "ab").decision == "stopped"


def test_start_checks_its_input(store_engine):
    v1, v2, _ = versions(store_engine)
    with store_engine.begin() as conn:
        mv.update_version(conn, v2, collections_dropped=True)
    cases = [(dict(treatment=f"v{v2}"), "no vectors"), (dict(treatment="v99"), "no model version"),
             (dict(treatment="x"), "not a model version"), (dict(treatment=f"v{v1}"), "already the active"),
             (dict(treatment="v3", canary=True), "canary needs"), (dict(treatment="v3", min_users=5), "add --canary")]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            experiments.start(store_engine, share=0.5, now=T0, **kwargs)
    with pytest.raises(ValueError, match="no experiment is running"):
        experiments.stop(store_engine, T0)


def test_migration_0005_matches_the_model_and_goes_down_cleanly(tmp_path):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from db_utils import migrate
    from db_utils.engine import create
    from db_utils.models import Base

    url = f"sqlite:///{tmp_path}/m.db"
    migrate.upgrade(url)
    engine = create(url)
    with engine.connect() as conn:
        diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                if "experiments" in repr(d)]
    assert diff == []
    command.downgrade(migrate.alembic_config(url), "0004")
    assert not inspect(create(url)).has_table("experiments")
    migrate.upgrade(url)
    assert inspect(create(url)).has_table("experiments")
    engine.dispose()


def test_the_report_command_serves_the_experiment_gauges(tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from db_utils import migrate
    from db_utils.engine import create
    from tests.fixtures.services import free_port, wait_for

    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    engine = create(url)
    _, v2, _ = versions(engine)
    name = start_canary(engine, v2)
    stream(engine, name, SHARES, {"control": 0.45, "treatment": 0.30})
    engine.dispose()
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "evaluation", "experiment", "report", "--database-url", url,
                             "--serve-metrics", str(port), "--refresh-seconds", "0.5", "--max-seconds", "60"],
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE)
    scraped: dict[str, str] = {}

    def gauges() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            scraped["text"] = response.read().decode()
        return f'experiment_treatment_worse{{experiment="{name}"}} 1.0' in scraped["text"]

    try:
        wait_for(gauges, timeout=60, what="the experiment gauges")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert f'experiment_users{{arm="treatment",experiment="{name}"}}' in scraped["text"]
