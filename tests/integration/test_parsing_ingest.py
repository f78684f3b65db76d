"""`python -m data_parsing ingest` from files and stdin into a real store (SQLite and PostgreSQL): the store
equals an oracle computed from the good events alone; replays change nothing; bad input is counted and
sampled; start-up failures are one clear line; SIGTERM flushes; the database dropping is retried."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc, select, text

from data_parsing import metrics
from data_parsing.config import ParserSettings
from data_parsing.ingest import Ingestor
from data_parsing.sources import LineSource
from db_utils import migrate
from db_utils.engine import create
from db_utils.models import RejectedLine
from tests.fixtures.log_streams import ROOT, comparable_state, corrupted_stream, ingest_cmd, oracle_state, run_ingest
from tests.fixtures.services import free_port, wait_for


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    path = tmp_path_factory.mktemp("stream") / "events.log"
    lines = corrupted_stream(str(path), events=3000)
    return path, lines


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    return url


def _ingest(engine, path: Path, **settings) -> Ingestor:
    ingestor = Ingestor(LineSource.open_file(str(path)), engine, ParserSettings(metrics_port=0, **settings))
    ingestor.run()
    return ingestor


def test_file_ingest_equals_the_oracle_on_both_dialects(store_engine, stream) -> None:
    path, lines = stream
    ingestor = _ingest(store_engine, path, batch_size=700)
    assert comparable_state(store_engine) == oracle_state(lines)
    totals = ingestor.totals
    assert totals.lines == len(lines)
    assert sum(totals.events.values()) + sum(totals.rejected.values()) == len(lines)
    assert {"malformed", "control_chars", "invalid_utf8", "too_long", "bad_time"} <= set(totals.rejected)


def test_replays_and_other_batchings_leave_the_same_store(sqlite_url: str, stream) -> None:
    path, lines = stream
    engine = create(sqlite_url)
    _ingest(engine, path, batch_size=5000)
    first = comparable_state(engine)
    _ingest(engine, path, batch_size=37)
    proc = run_ingest("-", sqlite_url, "--batch-size", "333", input=path.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert comparable_state(engine) == first == oracle_state(lines)
    engine.dispose()


def test_rejected_lines_are_stored_capped_but_all_counted(sqlite_url: str, stream) -> None:
    path, lines = stream
    engine = create(sqlite_url)
    ingestor = _ingest(engine, path, rejected_cap=3)
    with engine.connect() as conn:
        stored = conn.execute(select(RejectedLine.reason, RejectedLine.offset, RejectedLine.raw)).all()
    per_reason: dict[str, int] = {}
    for reason, offset, raw in stored:
        per_reason[reason] = per_reason.get(reason, 0) + 1
        assert lines[offset - 1].decode("utf-8", "backslashreplace").startswith(raw[:20].split("\\x")[0])
    assert per_reason == {r: min(3, n) for r, n in ingestor.totals.rejected.items()}
    assert sum(ingestor.totals.rejected.values()) > len(stored)
    engine.dispose()


def test_cli_reports_the_run_and_exits_zero(sqlite_url: str, stream) -> None:
    path, lines = stream
    proc = run_ingest(f"file:{path}", sqlite_url)
    assert proc.returncode == 0, proc.stderr
    done = [json.loads(line) for line in proc.stderr.splitlines() if '"done"' in line][-1]
    assert done["lines"] == len(lines)
    assert sum(done["events"].values()) + sum(done["rejected"].values()) == len(lines)


@pytest.mark.parametrize(
    ("source", "url_of", "message"),
    [
        ("file:{log}", lambda tmp: "postgresql+psycopg://nobody@127.0.0.1:{port}/none", "database is unreachable"),
        ("file:{log}", lambda tmp: f"sqlite:///{tmp}/empty.db", "has no schema"),
        ("file:{tmp}/missing.log", None, "cannot read"),
        ("kafka://127.0.0.1:{port}/movielog", None, "unreachable"),
        ("ftp://x", None, "unknown source"),
    ],
)
def test_cli_start_failures_are_one_clear_line(tmp_path: Path, sqlite_url: str, stream, source, url_of, message):
    path, _ = stream
    port = free_port()
    url = url_of(tmp_path).format(port=port) if url_of else sqlite_url
    proc = run_ingest(source.format(log=path, tmp=tmp_path, port=port), url, "--start-timeout", "2", timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("data_parsing: ") and message in last, proc.stderr


def _metric(port: int, name: str) -> float | None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_sigterm_applies_the_batch_in_hand_and_exits_zero_with_metrics(sqlite_url: str, stream) -> None:
    """Every line read but held in memory (a batch of 1 hour); SIGTERM makes them land, then exit 0."""
    path, lines = stream
    port = free_port()
    cmd = ingest_cmd("-", sqlite_url, "--batch-seconds", "3600", "--batch-size", "1000000", "--progress-seconds", "0.2")
    cmd[cmd.index("--metrics-port") + 1] = str(port)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log: list[dict] = []

    def collect() -> None:
        for raw in proc.stderr:
            if raw.startswith("{"):
                log.append(json.loads(raw))

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    engine = create_engine(sqlite_url)
    try:
        proc.stdin.buffer.write(path.read_bytes())
        proc.stdin.flush()  # stdin stays open: the parser cannot know the stream ended
        wait_for(lambda: any(e.get("lines") == len(lines) for e in log), timeout=60, what="all lines read")
        assert _metric(port, "parser_up") == 1.0
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM watched")).scalar_one() == 0
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    assert proc.returncode == 0, log[-3:]
    assert any(e.get("event") == "stopping" for e in log)
    assert comparable_state(engine) == oracle_state(lines)
    engine.dispose()


def test_metrics_count_events_and_rejections(sqlite_url: str, stream) -> None:
    path, _ = stream
    engine = create(sqlite_url)
    before = {k: metrics.EVENTS.labels(kind=k)._value.get() for k in ("watch", "rate", "recommendation")}
    rejected_before = metrics.REJECTED.labels(reason="malformed")._value.get()
    ingestor = _ingest(engine, path)
    for kind, n in ingestor.totals.events.items():
        assert metrics.EVENTS.labels(kind=kind)._value.get() - before[kind] == n
    assert (
        metrics.REJECTED.labels(reason="malformed")._value.get() - rejected_before
        == ingestor.totals.rejected["malformed"]
    )
    assert metrics.LAST_APPLIED._value.get() > 0
    engine.dispose()


class _FlakyEngine:
    """An engine whose first `failures` transactions fail as if the server had gone away."""

    def __init__(self, engine, failures: int) -> None:
        self.engine, self.failures = engine, failures

    def begin(self):
        if self.failures > 0:
            self.failures -= 1
            raise exc.OperationalError("BEGIN", {}, Exception("server closed the connection unexpectedly"))
        return self.engine.begin()


def test_database_dropping_later_is_retried_with_backoff(sqlite_url: str, stream) -> None:
    path, lines = stream
    engine = create(sqlite_url)
    flaky = _FlakyEngine(engine, failures=2)
    ingestor = Ingestor(LineSource.open_file(str(path)), flaky, ParserSettings(metrics_port=0))  # type: ignore[arg-type]
    ingestor.run()
    assert flaky.failures == 0
    assert comparable_state(engine) == oracle_state(lines)
    engine.dispose()


def test_stop_while_the_database_is_down_leaves_the_batch_unapplied(sqlite_url: str, stream) -> None:
    from data_parsing.ingest import StopWhileDatabaseDown

    path, _ = stream
    engine = create(sqlite_url)
    stop = threading.Event()
    flaky = _FlakyEngine(engine, failures=10**6)
    ingestor = Ingestor(LineSource.open_file(str(path)), flaky, ParserSettings(metrics_port=0), stop)  # type: ignore[arg-type]
    threading.Timer(1.0, stop.set).start()
    with pytest.raises(StopWhileDatabaseDown):
        ingestor.run()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM watched")).scalar_one() == 0
    engine.dispose()


def test_metrics_port_taken_fails_a_consumer_but_not_a_replay(sqlite_url: str, stream) -> None:
    import socket

    path, _ = stream
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        replay = run_ingest(f"file:{path}", sqlite_url, "--metrics-port", port)
        consumer = run_ingest(
            "kafka://127.0.0.1:1/movielog", sqlite_url, "--metrics-port", port, "--start-timeout", "1"
        )
    assert replay.returncode == 0, replay.stderr
    assert "metrics_unavailable" in replay.stderr
    assert consumer.returncode == 2
    assert "cannot serve metrics" in consumer.stderr
