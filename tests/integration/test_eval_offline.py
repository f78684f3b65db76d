"""The offline evaluation end to end on a slice of the demo (real parser CLI, embedding job with the real
model, collaborative job, embedded ChromaDB, the service's ranking), and the notebook run headless."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from evaluation.__main__ import main
from evaluation.offline import OfflineConfig, run_offline

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("hit_rate_at_20", "hit_rate_at_10", "ndcg_at_20", "mrr", "coverage_local", "coverage_global")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("eval_cache"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("eval_work"))


@pytest.fixture(scope="module")
def slice_report(cache_dir: str, workdir: str) -> dict:
    return run_offline(OfflineConfig(seed=3, demo_users=20, cache_dir=cache_dir, workdir=workdir))


def test_report_has_every_field_for_ours_and_each_baseline(slice_report: dict) -> None:
    assert slice_report["users"] == 20 and slice_report["users_excluded"] == 0
    for system in (slice_report, *slice_report["baselines"].values()):
        for field in FIELDS:
            assert 0.0 <= system[field] <= 1.0, field
        assert sum(b["users"] for b in system["by_history_length"].values()) == 20
    assert set(slice_report["baselines"]) == {"most_popular", "random", "item_knn", "ease", "als"}
    assert slice_report["paired_test"]["against"] in {"item_knn", "ease", "als"}
    assert slice_report["held_out_lines"] > 0 and slice_report["store_movies"] <= slice_report["catalog_movies"]
    assert slice_report["encoder_cache"]["misses"] + slice_report["encoder_cache"]["hits"] == \
        slice_report["catalog_movies"]


def test_rerun_is_deterministic_and_computes_no_vector(slice_report: dict, cache_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["offline", "--protocol", "leave-last-out", "--out", str(out), "--seed", "3", "--demo-users", "20",
                 "--cache-dir", cache_dir]) == 0
    again = json.loads(out.read_text())
    assert again["encoder_cache"]["misses"] == 0
    for field in FIELDS:
        assert again[field] == slice_report[field]
        assert again["baselines"]["item_knn"][field] == slice_report["baselines"]["item_knn"][field]


def test_notebook_runs_headless_and_plots(venv_kernel: str, cache_dir: str, slice_report: dict,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("OFFLINE_DEMO_USERS", "20")
    monkeypatch.setenv("OFFLINE_CACHE_DIR", cache_dir)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "evaluation" / "offline_evaluation.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=venv_kernel, timeout=600, resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 5  # hit rate against coverage, history length, coverage, popularity bias, experiments
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "| service ranking" in text and "20 users scored" in text
    assert "leave-last-out (this notebook): service " in text


def test_live_service_answers_what_the_evaluation_ranked_and_replay_plays_against_it(
        slice_report: dict, workdir: str, tmp_path: Path) -> None:
    """gunicorn over the evaluation's store and both collections (the default blended vector store)
    returns, for each user, exactly the list the offline evaluation scored; the replay runs against it."""
    import dataclasses

    from embeddings.collab_job import collab_settings
    from embeddings.config import EmbeddingSettings
    from embeddings.store import VectorStore
    from evaluation.offline import Built, read_inputs, recommend
    from evaluation.simulator import replay as rp
    from inference.config import ServiceSettings
    from tests.fixtures.inference_server import gunicorn_service

    db_url = f"sqlite:///{workdir}/recsys.db"
    chroma = os.path.join(workdir, "chroma")
    settings = dataclasses.replace(EmbeddingSettings.from_env({}), chroma_path=chroma)
    content, collab = VectorStore(settings), VectorStore(collab_settings(settings, env={}))
    service_settings = ServiceSettings.from_env({})
    users = [int(u) for u in sorted(json.loads((Path(workdir) / "held_out.json").read_text()))][:5]
    expected = recommend(read_inputs(Built(db_url, content, collab), users, service_settings), service_settings.rank)
    content.close()
    collab.close()

    env = {"DATABASE_URL": db_url, "CHROMA_PATH": chroma, "ACCESS_LOG": "0"}
    with gunicorn_service(env, workers=1) as service:
        for user in users:
            status, _, body = service.get(f"/recommend/{user}")
            assert status == 200
            assert body.strip().split(",") == expected[user]
        futures = {u: [(m, 4) for m in expected[u][:2]] + [("not+a+movie", 3)] for u in users}
        out = tmp_path / "replay.log"
        sink = rp.open_sink(f"file:{out}")
        stats = rp.replay(service.url, futures, sink, rp.ReplayConfig(max_requests=10, max_seconds=60))
        sink.close()
    assert stats.requests == 10 and stats.errors == 0 and stats.conversions == 10
    assert out.read_text().count("recommendation request 127.0.0.1:") == 10

    # end to end: the replayed lines through the real parser into a copy of the store, then the online
    # evaluation (sessions are 30 simulated minutes apart; a 20-minute window leaves the last one pending)
    import shutil
    import subprocess
    import sys

    from db_utils.engine import create
    from evaluation import online

    shutil.copy(Path(workdir) / "recsys.db", tmp_path / "online.db")
    url = f"sqlite:///{tmp_path / 'online.db'}"
    subprocess.run([sys.executable, "-m", "data_parsing", "ingest", "--source", f"file:{out}", "--database-url", url,
                    "--metrics-port", "0"], check=True, capture_output=True, timeout=120)
    engine = create(url)
    report = online.conversion_report(engine, window_hours=1 / 3)
    engine.dispose()
    assert (report["served"], report["pending"], report["converted"]) == (9, 1, 9)
    assert report["online_conversion_rate"] == 1.0 and report["mean_rating"] == 4.0
