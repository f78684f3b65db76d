"""`python -m data_parsing quality --since ...` reads the drift comparison back from the store; the
live parser's windows, scores and bounded rejected_lines on a real ingest (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from data_parsing import metrics
from data_parsing.config import ParserSettings
from data_parsing.ingest import Ingestor
from data_parsing.quality import STRONG
from data_parsing.sources import LineSource
from db_utils import migrate, queries
from tests.fixtures.drift_streams import drifted_lines
from tests.fixtures.log_streams import ROOT, run_ingest

pytestmark = pytest.mark.integration


def quality_cmd(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "data_parsing", "quality", "--database-url", url, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def drifted_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store holding 4 steady minutes, then 4 with the rating distribution shifted."""
    tmp = tmp_path_factory.mktemp("quality")
    log = tmp / "drift.log"
    log.write_bytes(b"\n".join(drifted_lines()) + b"\n")
    url = f"sqlite:///{tmp}/recsys.db"
    migrate.upgrade(url)
    done = run_ingest(f"file:{log}", url)
    assert done.returncode == 0, done.stderr
    return url


def test_quality_prints_the_drift_comparison_from_the_store(drifted_store: str) -> None:
    done = quality_cmd(drifted_store, "--since", "2026-11-25T12:00:00Z", "--window-seconds", "60")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # one JSON document, nothing else on stdout
    assert report["thresholds"] == {"moderate": 0.1, "strong": 0.25}
    assert report["reference"] == "2026-11-25T12:00:00"
    windows = report["windows"]
    assert [w["start"][11:16] for w in windows] == [f"12:0{i}" for i in range(8)]
    assert windows[0]["scores"] == {} and windows[0]["rating"]  # the reference, with its distribution
    steady, shifted = windows[1:4], windows[4:]
    assert all(w["scores"]["rating"] < 0.1 for w in steady), steady
    for w in shifted:
        assert w["scores"]["rating"] > STRONG and w["strongest"] == "rating" and w["drift"] == "strong"
    assert report["drift"] == "strong"


def test_quality_since_later_starts_the_reference_later(drifted_store: str) -> None:
    done = quality_cmd(drifted_store, "--since", "2026-11-25T13:04:00+01:00", "--window-seconds", "60")
    report = json.loads(done.stdout)
    assert report["reference"] == "2026-11-25T12:04:00"
    assert all(w["scores"]["rating"] < 0.1 for w in report["windows"][1:])  # shifted vs shifted: no drift


@pytest.mark.parametrize("since", ["yesterday", "2026-02-30T00:00:00", "2026-11-25"])
def test_quality_refuses_a_bad_since_in_one_line(drifted_store: str, since: str) -> None:
    done = quality_cmd(drifted_store, "--since", since)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("data_parsing: --since") and done.stderr.count("\n") == 1


def test_live_parser_scores_windows_and_bounds_rejected_lines(store_engine: Engine, tmp_path: Path) -> None:
    lines = drifted_lines(per_window=900, windows=3)
    junk = [b"garbage line %d" % i for i in range(50)]
    path = tmp_path / "s.log"
    path.write_bytes(b"\n".join(junk + lines) + b"\n")
    settings = ParserSettings(metrics_port=0, batch_size=500, quality_window_seconds=60, quality_min_count=100,
                              rejected_max_rows=20)
    ingestor = Ingestor(LineSource.open_file(str(path)), store_engine, settings)
    ingestor.run()
    assert metrics.DRIFT.labels(feature="rating")._value.get() > STRONG  # the last closed window: shifted
    with store_engine.connect() as conn:
        assert queries.count_rows(conn, "rejected_lines") == 20
        assert queries.count_rows(conn, "ratings") > 0
