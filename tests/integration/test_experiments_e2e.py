"""An experiment end to end on a real store (a slice of the MovieLens demo ingested by the parser) and a
real gunicorn with two workers: `training experiment start`, every user's arm sticky across workers and a
restart (unknown users too), the stream of the served lists and watches ingested, `evaluation experiment
report` finding the arm whose users convert more and giving the same figures on every run, `experiment
stop` picked up without a restart, `stop --promote`, and the commands' one-sentence errors."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from core.assignment import assign
from db_utils import migrate
from db_utils import model_versions as mv
from db_utils.engine import create
from db_utils.models import Movie
from embeddings.config import EmbeddingSettings
from embeddings.store import VectorStore
from tests.fixtures.inference_server import Service, gunicorn_service
from tests.fixtures.services import wait_for
from tests.integration.test_training_lifecycle import demo, ingest  # noqa: F401  (the small-demo fixture)
from training.cycle import now_utc

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
RANK = {"content_weight": 0.0, "collab_weight": 1.0}


def run(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def ok(module: str, env: dict[str, str], *args: str) -> dict:
    out = run(module, env, *args)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def refused(module: str, env: dict[str, str], *args: str) -> str:
    out = run(module, env, *args)
    assert out.returncode == 1 and out.stdout == "", (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    return lines[-1]


def make_versions(url: str, chroma: str, count: int = 2) -> None:
    """`count` versions whose collaborative collections hold seeded random vectors of every stored movie
    (the service only needs vectors to answer; what they are does not matter here)."""
    engine = create(url)
    with engine.begin() as conn:
        movies = sorted(conn.execute(select(Movie.__table__.c.id)).scalars())
        for seed in range(count):
            vid = mv.create_version(conn, content_collection="movies", rank_config=RANK, collab_config={},
                                    code_revision="test", model_fingerprint="f", now=now_utc())
            settings = dataclasses.replace(EmbeddingSettings.from_env({}), chroma_path=chroma,
                                           collection=f"collab_v{vid}")
            store = VectorStore(settings)
            store.upsert(movies, np.random.default_rng(seed).normal(size=(len(movies), 16)).astype(np.float32))
            store.stamp_version()
            store.close()
            mv.update_version(conn, vid, collab_collection=f"collab_v{vid}")
    engine.dispose()


def answers(service: Service, users: list[int], rounds: int) -> dict[int, set[tuple]]:
    """Each user's (experiment, arm, version) over `rounds` requests (spread over the workers)."""
    seen: dict[int, set[tuple]] = defaultdict(set)
    for _ in range(rounds):
        for user in users:
            status, _, body = service.get(f"/recommend/{user}?format=json")
            assert status == 200, body
            doc = json.loads(body)
            seen[user].add((doc["experiment"], doc["arm"], doc["model_version"]))
    return seen


def all_on(service: Service, users: list[int], wanted: str | None) -> bool:
    return all(e == wanted for arms in answers(service, users, 2).values() for e, _, _ in arms)


def test_an_experiment_from_start_to_promotion(demo, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path}/recsys.db"
    chroma = str(tmp_path / "chroma")
    migrate.upgrade(url)
    ingest(url, demo.first)
    make_versions(url, chroma)
    env = {**os.environ, "DATABASE_URL": url, "CHROMA_PATH": chroma, "PYTHONPATH": str(ROOT),
           "ANONYMIZED_TELEMETRY": "False"}
    assert ok("training", env, "promote", "v1")["active"] == "v1"
    assert "no experiment is running" in refused("training", env, "experiment", "stop")
    assert "no model version v9" in refused("training", env, "experiment", "start", "--treatment", "v9")
    assert "share" in refused("training", env, "experiment", "start", "--treatment", "v2", "--share", "1.5")
    assert "--canary" in refused("training", env, "experiment", "start", "--treatment", "v2", "--min-users", "9")

    service_env = {"DATABASE_URL": url, "CHROMA_PATH": chroma, "MODEL_POLL_SECONDS": "0.5", "POPULAR_SNAPSHOT": "",
                   "PROVENANCE_LOG": str(tmp_path / "provenance.log"), "NEIGHBOUR_WARM_COUNT": "50",
                   "MODEL_SWITCH_WARM": "50"}
    users = demo.users[:40] + [2_000_000 + i for i in range(20)]  # known users and unknown (cold-start) ones
    shares = [("control", 0.5), ("treatment", 0.5)]
    expected = {u: assign("ab", u, shares) for u in users}
    version_of = {"control": "v1", "treatment": "v2"}
    with gunicorn_service(service_env, workers=2) as service:
        assert all_on(service, users[:5], None)
        started = ok("training", env, "experiment", "start", "--treatment", "v2", "--share", "0.5", "--name", "ab")
        assert started["started"]["name"] == "ab" and started["started"]["control_version_id"] == 1
        assert "is running" in refused("training", env, "experiment", "start", "--treatment", "v2")
        wait_for(lambda: all_on(service, users, "ab"), timeout=60, what="both workers on the experiment")
        seen = answers(service, users, 4)
        assert {u: s for u, s in seen.items() if len(s) != 1} == {}  # sticky across requests and workers
        assert {u: next(iter(s)) for u, s in seen.items()} == {u: ("ab", a, version_of[a]) for u, a in expected.items()}
        status, _, body = service.get(f"/recommend/{users[0]}")
        assert status == 200 and body
    with gunicorn_service(service_env, workers=2) as service:  # a restart: the same arms
        seen = answers(service, users, 2)
        assert {u: next(iter(s)) for u, s in seen.items()} == {u: ("ab", a, version_of[a]) for u, a in expected.items()}
        lists = {u: service.get(f"/recommend/{u}")[2].split(",") for u in range(1, 601)}

        # the simulator's log of those lists, and watches: treatment users take a listed movie more often
        rng = random.Random(5)
        served_at = now_utc() + timedelta(minutes=1)
        lines = []
        for user, ids in lists.items():
            arm = assign("ab", user, shares)
            lines.append(f"{served_at:%Y-%m-%dT%H:%M:%S},{user},recommendation request s1, status 200, result: "
                         f"{', '.join(ids)}, 30 ms")
            if ids and rng.random() < (0.5 if arm == "treatment" else 0.2):
                lines.append(f"{served_at + timedelta(hours=2):%Y-%m-%dT%H:%M:%S},{user},GET /data/m/{ids[3]}/1.mpg")
        lines.append(f"{served_at + timedelta(days=2):%Y-%m-%dT%H:%M:%S},1,GET /data/m/{lists[1][0]}/2.mpg")
        (tmp_path / "experiment.log").write_text("\n".join(lines) + "\n")
        ingest(url, str(tmp_path / "experiment.log"))

        out = run("evaluation", env, "experiment", "report", "--name", "ab", "--out", str(tmp_path / "r1.json"))
        assert out.returncode == 0, out.stderr
        assert "experiment ab" in out.stdout and "treatment - control" in out.stdout
        report = json.loads((tmp_path / "r1.json").read_text())
        counts = {arm: sum(1 for u in lists if assign("ab", u, shares) == arm) for arm in ("control", "treatment")}
        assert {a: report["arms"][a]["users"] for a in counts} == counts
        assert report["arms"]["treatment"]["model_version"] == "v2"
        conversion = report["comparisons"]["treatment"]["conversion"]
        assert conversion["difference"] > 0 and conversion["p_value"] < 0.05, conversion
        assert not report["srm"]["mismatch"]
        assert run("evaluation", env, "experiment", "report", "--out", str(tmp_path / "r2.json")).returncode == 0
        assert (tmp_path / "r2.json").read_text() == (tmp_path / "r1.json").read_text()  # reproducible

        assert ok("training", env, "experiment", "stop") == {"stopped": "ab", "decision": "stopped"}
        wait_for(lambda: all_on(service, users, None), timeout=60, what="both workers off the experiment")
        assert {v for s in answers(service, users, 1).values() for _, _, v in s} == {"v1"}

        ok("training", env, "experiment", "start", "--treatment", "v2", "--share", "0.1", "--name", "canary",
           "--canary", "--min-users", "100", "--max-days", "7")
        wait_for(lambda: all_on(service, users, "canary"), timeout=60, what="the canary served")
        promoted = ok("training", env, "experiment", "stop", "--promote")
        assert promoted == {"stopped": "canary", "decision": "promoted", "active": "v2", "previous": "v1"}
        wait_for(lambda: {v for s in answers(service, users, 1).values() for e, _, v in s if e is None} == {"v2"},
                 timeout=60, what="every worker on the promoted version")
    status = ok("training", env, "status")
    assert status["active"] == "v2" and status["activations"][-1]["event"] == "promote"
    assert "no experiment named" in refused("evaluation", env, "experiment", "report", "--name", "nope")
