"""The model lifecycle on real stores: ingest, train, serve under load, ingest more, train again, switch,
roll back; a bad candidate rejected; kill -9 of the trainer in every step; provenance of an answer; the
trainer against PostgreSQL and a `chroma run` server."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from db_utils import migrate
from db_utils import model_versions as mv
from db_utils.engine import create
from embeddings.collab_job import collab_config_from_env, fit_pairs
from embeddings.config import EmbeddingSettings
from embeddings.store import VectorStore
from evaluation.offline import slice_demo
from evaluation.simulator.movielens import write_movielens
from evaluation.version_report import version_report
from inference.config import ServiceSettings
from tests.fixtures.inference_server import gunicorn_service
from tests.fixtures.services import wait_for
from tests.fixtures.stores import clear_store
from training.config import TrainingSettings
from training.cycle import Context, run_cycle

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Demo:
    catalog: str
    first: str
    rest: str
    users: list[int]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A slice of the MovieLens demo (150 users), its stream cut in two by time (60% / 40%)."""
    root = tmp_path_factory.mktemp("lifecycle-demo")
    write_movielens(str(root / "full"))
    catalog, events = slice_demo(str(root / "full" / "catalog.csv"), str(root / "full" / "events.log"),
                                 str(root / "slice"), users=150, seed=3)
    lines = Path(events).read_text().splitlines(keepends=True)
    cut = int(len(lines) * 0.6)
    (root / "first.log").write_text("".join(lines[:cut]))
    (root / "rest.log").write_text("".join(lines[cut:]))
    users = sorted({int(line.split(",")[1]) for line in lines})
    return Demo(catalog, str(root / "first.log"), str(root / "rest.log"), users)


def ingest(url: str, path: str) -> None:
    subprocess.run([sys.executable, "-m", "data_parsing", "ingest", "--source", f"file:{path}", "--database-url",
                    url, "--metrics-port", "0"], cwd=ROOT, check=True, capture_output=True, timeout=300)


def context(engine: Engine, chroma: str | EmbeddingSettings, encoder, **training) -> Context:
    embedding = chroma if isinstance(chroma, EmbeddingSettings) else dataclasses.replace(
        EmbeddingSettings.from_env({}), chroma_path=chroma)
    service = ServiceSettings.from_env({})
    return Context(engine, embedding, TrainingSettings(**training), service, collab_config_from_env({}),
                   encoder=encoder)


def trainer_env(url: str, chroma: str, encoder) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "CHROMA_PATH": chroma, "EMBED_ONNX_DIR": encoder.onnx_dir,
            "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def cli(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


class Load:
    """Requests /recommend for random demo users from 4 threads until stopped; records every answer."""

    def __init__(self, url: str, users: list[int]):
        self.url, self.users = url, users
        self.answers: list[tuple[int, int, str, list[str], float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(seed,)) for seed in range(4)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            user = rng.choice(self.users)
            sent = time.monotonic()  # an answer is judged against what the store held when it was asked
            try:
                with urllib.request.urlopen(f"{self.url}/recommend/{user}", timeout=10) as response:
                    ids = response.read().decode().split(",")
                    self.answers.append((user, response.status, response.headers["X-Model-Version"], ids, sent))
            except Exception as exc:  # any failure is a finding
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def versions(self, last: int = 40) -> set[str]:
        return {a[2] for a in self.answers[-last:]}


def watched_by(engine: Engine) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    with engine.connect() as conn:
        for user, movie, *_ in mv.interaction_events(conn):
            out.setdefault(user, set()).add(movie)
    return out


def first_part_store(tmp_path: Path, demo: Demo) -> tuple[str, str, Engine]:
    """A migrated SQLite store at tmp_path holding the demo's first part, and its ChromaDB path."""
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    ingest(url, demo.first)
    return url, str(tmp_path / "chroma"), create(url)


def test_a_full_cycle_switches_the_service_without_a_failed_or_mixed_answer(demo, tmp_path, encoder):
    url, chroma, engine = first_part_store(tmp_path, demo)
    first = run_cycle(context(engine, chroma, encoder), demo.catalog)
    assert first["version"] == "v1" and first["status"] == "active", first
    assert first["gate"]["candidate"]["hit_rate_at_20"] > first["gate"]["most_popular"]["hit_rate_at_20"]

    provenance = tmp_path / "provenance.log"
    env = {"DATABASE_URL": url, "CHROMA_PATH": chroma, "MODEL_POLL_SECONDS": "0.5", "POPULAR_SNAPSHOT": "",
           "PROVENANCE_LOG": str(provenance), "NEIGHBOUR_WARM_COUNT": "200", "MODEL_SWITCH_WARM": "200"}
    with gunicorn_service(env, workers=2) as service, Load(service.url, demo.users) as load:
        wait_for(lambda: len(load.answers) > 100, timeout=60, what="answers from v1")
        assert load.versions() == {"v1"}
        ingest(url, demo.rest)  # new users and new movies arrive while the service serves
        ingested_at = time.monotonic()
        second = run_cycle(context(engine, chroma, encoder), demo.catalog)
        assert second["version"] == "v2" and second["status"] == "active", second
        assert second["gate"]["active_version"] == "v1"
        wait_for(lambda: load.versions() == {"v2"}, timeout=60, what="every worker on v2")
        env_cli = trainer_env(url, chroma, encoder)
        rolled = cli(env_cli, "rollback")
        assert rolled == {"active": "v1", "previous": "v2", "event": "rollback"}
        wait_for(lambda: load.versions() == {"v1"}, timeout=60, what="every worker back on v1")
        time.sleep(1)
    assert load.errors == [] and {a[1] for a in load.answers} == {200}
    assert {a[2] for a in load.answers} <= {"v1", "v2"}
    seen = watched_by(engine)
    # answers to requests sent after the rest was ingested know every watch of the user; none lists one (a
    # request sent before may be answered seconds later on a loaded machine, from the store it read then)
    late = [a for a in load.answers if a[4] > ingested_at]
    assert len(late) > 100
    assert all(not set(ids) & seen.get(user, set()) for user, _, _, ids, _ in late)

    status = cli(env_cli, "status")
    assert status["active"] == "v1" and [v["version"] for v in status["versions"]] == ["v2", "v1"]
    assert [a["event"] for a in status["activations"]] == ["promote", "promote", "rollback"]
    user = load.answers[-1][0]
    trace = cli(env_cli, "provenance", "--user", str(user), "--log", str(provenance))
    assert trace["answer"]["user_id"] == user and trace["answer"]["version"] in {"v1", "v2"}
    assert trace["version"]["watermark"]["rows"]["watched"] > 0
    assert trace["version"]["code_revision"] not in ("", None)
    engine.dispose()


def shuffled_fit(pairs, config):
    """Collaborative vectors under the wrong ids: a broken candidate."""
    ids, vectors = fit_pairs(pairs, config)
    shuffled = list(ids)
    random.Random(0).shuffle(shuffled)
    return shuffled, vectors


def test_a_bad_candidate_is_rejected_and_the_active_version_stays(demo, tmp_path, encoder):
    url, chroma, engine = first_part_store(tmp_path, demo)
    ctx = context(engine, chroma, encoder)
    first = run_cycle(ctx, demo.catalog)
    assert first["status"] == "active"
    # the offline report re-scores the active version from the store: the gate's figures, exactly
    report = version_report(engine, ctx.embedding, ctx.service)
    assert report["matches_gate"] and report["version"] == "v1"
    assert report["service_ranking"]["users"] == first["gate"]["candidate"]["users"]
    assert report["largest_difference"] <= 0.002  # the ANN index may order a near tie differently
    assert report["baselines"]["most_popular"] == first["gate"]["most_popular"]
    ingest(url, demo.rest)
    ctx.fit = shuffled_fit
    bad = run_cycle(ctx)
    assert bad["status"] == "rejected" and bad["version"] == "v2", bad
    assert "below the active version" in bad["reason"] or "most popular" in bad["reason"]
    with engine.connect() as conn:
        assert mv.active_version(conn).name == "v1"
        assert mv.get_version(conn, 2).metrics["candidate"]["hit_rate_at_20"] < \
            mv.get_version(conn, 2).metrics["active"]["hit_rate_at_20"]
    engine.dispose()


STEPS = ["embed", "snapshot", "gate", "fit", "decide", "prune"]


def start_trainer(env: dict[str, str], pause_at: str) -> subprocess.Popen:
    """`python -m training run`, held for a while at the start of the step `pause_at` (a sitecustomize
    in tests/fixtures/pause_steps slows that step down so the kill lands inside it)."""
    env = {**env, "PYTHONPATH": f"{ROOT / 'tests' / 'fixtures' / 'pause_steps'}{os.pathsep}{ROOT}",
           "TEST_PAUSE_STEP": pause_at}
    return subprocess.Popen([sys.executable, "-m", "training", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_kill_9_of_the_trainer_in_every_step_keeps_serving_and_the_next_run_finishes(demo, tmp_path, encoder):
    url, chroma, engine = first_part_store(tmp_path, demo)
    assert run_cycle(context(engine, chroma, encoder), demo.catalog)["version"] == "v1"
    ingest(url, demo.rest)  # new data, so every run below has a candidate to make
    env = trainer_env(url, chroma, encoder)
    for step in STEPS:
        proc = start_trainer(env, step)
        marker = f'"step":"{step}"'
        deadline = time.monotonic() + 300
        seen = ""
        while marker not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stderr.readline()
        assert marker in seen, f"the trainer never reached {step}: {seen[-1500:]}"
        time.sleep(0.3)  # inside the paused step
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        with engine.connect() as conn:
            active = mv.active_version(conn)
        expected = {"v1"} if step != "prune" else {"v1", active.name}
        assert active is not None and active.name in expected, step
        store = VectorStore(dataclasses.replace(EmbeddingSettings.from_env({}), chroma_path=chroma,
                                                collection=active.collab_collection))
        assert store.count() > 0, f"the active version lost its vectors after a kill in {step}"
    done = cli(env, "run")
    assert done["status"] == "active", done
    with engine.connect() as conn:
        statuses = {v.name: v.status for v in mv.list_versions(conn)}
    assert statuses[done["version"]] == "active"
    assert "candidate" not in statuses.values()  # every orphan was recovered as failed
    with engine.connect() as conn:
        kept = [v for v in mv.list_versions(conn) if not v.collections_dropped]
    assert 1 <= len(kept) <= TrainingSettings().keep_versions  # older and failed versions' vectors deleted
    engine.dispose()


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    migrate.upgrade(postgres_url)
    engine = create(postgres_url)
    clear_store(engine)
    yield engine
    clear_store(engine)
    engine.dispose()


def test_the_trainer_on_postgresql_and_a_chroma_server(demo, pg_engine, chroma_server, encoder):
    host, port = chroma_server
    ingest(pg_engine.url.render_as_string(hide_password=False), demo.first)
    embedding = dataclasses.replace(EmbeddingSettings.from_env({}), chroma_host=host, chroma_port=port,
                                    collection="movies_pg_lifecycle", collab_collection="cf_pg_lifecycle")
    ctx = context(pg_engine, embedding, encoder)
    out = run_cycle(ctx, demo.catalog)
    assert out["status"] == "active", out
    store = VectorStore(dataclasses.replace(embedding, collection=f"cf_pg_lifecycle_{out['version']}"))
    assert store.count() == out["fitted"]["movies"] > 0
    vectors = store.get(store_ids := sorted(store.ids())[:3])
    assert set(vectors) == set(store_ids) and all(np.isclose(np.linalg.norm(v), 1.0, atol=1e-3)
                                                   for v in vectors.values())


def test_the_schedule_retries_a_failed_cycle_serves_metrics_and_stops_on_sigterm(demo, tmp_path, encoder):
    """`run --every`: a cycle on an empty store fails and is logged; after the stream arrives the next tick
    promotes; /metrics counts both; SIGTERM ends the trainer between steps with exit 0."""
    from tests.fixtures.services import free_port

    url = f"sqlite:///{tmp_path}/recsys.db"
    chroma = str(tmp_path / "chroma")
    migrate.upgrade(url)
    port = free_port()
    env = {**trainer_env(url, chroma, encoder), "TRAIN_METRICS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "training", "run", "--every", "3s", "--catalog", demo.catalog],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = ""
        deadline = time.monotonic() + 240
        while "cycle failed" not in log and time.monotonic() < deadline:
            log += proc.stderr.readline()
        assert "the store holds no watch or rating yet" in log
        ingest(url, demo.first)
        line = proc.stdout.readline()  # the next tick's document
        assert json.loads(line)["status"] == "active"

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.read().decode()

        metrics = scrape()
        failed = re.search(r'trainer_cycles_total\{status="failed"\} (\d+)', metrics)
        assert failed and int(failed.group(1)) >= 1
        assert 'trainer_cycles_total{status="active"} 1.0' in metrics
        assert "trainer_active_version 1.0" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
