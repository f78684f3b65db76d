"""`python -m data_parsing ingest --source file:PATH | - | kafka://HOST:PORT/TOPIC` and `quality --since TIME`.

`quality` prints one JSON document on stdout: the stream's windows since TIME, read back from the store,
each scored against the first (reference) window with the same statistics and thresholds as the live
parser's `stream_drift_score` (data_parsing/quality.py); exit 0, or 2 with one line on bad input.

Exit 0 after the source ends, after --max-idle seconds without a record, or on SIGTERM/SIGINT (the batch
in hand is applied and committed first). Exit 2 with one line when the database or the broker is
unavailable at start (or, for a Kafka source, the metrics port is taken: a file replay then runs without
metrics); exit 1 when asked to stop while the database is down.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from data_parsing import logs

log = logging.getLogger("data_parsing")


def _fail(message: str, code: int = 2) -> int:
    print(f"data_parsing: {message}", file=sys.stderr)
    return code


def _database_problem(url: str | None) -> str | None:
    """None when the store answers and has its tables, else one sentence saying what is wrong."""
    import sqlalchemy as sa

    from db_utils.engine import get_engine

    try:
        engine = get_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            if not sa.inspect(conn).has_table("watched"):
                where = engine.url.render_as_string()
                return f"the database at {where} has no schema; run `python -m db_utils migrate`"
    except Exception as exc:  # any driver error at start means: unreachable or misconfigured
        detail = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0][:200]
        return f"the database is unreachable: {detail}"
    return None


def ingest(args: argparse.Namespace) -> int:
    from data_parsing import metrics
    from data_parsing.config import ParserSettings
    from data_parsing.ingest import Ingestor, StopWhileDatabaseDown, known_ids
    from data_parsing.sources import SourceUnavailable, open_source
    from db_utils.engine import get_engine

    try:
        settings = ParserSettings.from_env()
    except ValueError as exc:
        return _fail(str(exc))
    overrides = {
        k: v
        for k, v in {
            "batch_size": args.batch_size,
            "batch_seconds": args.batch_seconds,
            "metrics_port": args.metrics_port,
        }.items()
        if v is not None
    }
    if overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)
    url = args.database_url or settings.database_url
    problem = _database_problem(url)
    if problem:
        return _fail(problem)
    try:
        metrics.serve(settings.metrics_port)
    except OSError as exc:
        if args.source.startswith("kafka://"):  # a long-running consumer must be observable
            return _fail(f"cannot serve metrics on port {settings.metrics_port}: {exc.strerror}")
        # a one-shot replay must not fail because a live parser holds the port
        log.warning({"event": "metrics_unavailable", "port": settings.metrics_port, "error": exc.strerror})
    try:
        source = open_source(
            args.source, settings.kafka_group_id, args.start_timeout, settings.kafka_session_timeout_ms
        )
    except SourceUnavailable as exc:
        return _fail(str(exc))

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info({"event": "stopping", "signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine = get_engine(url)
    ingestor = Ingestor(source, engine, settings, stop, known_ids(engine))
    started = time.monotonic()
    try:
        totals = ingestor.run(max_idle=args.max_idle, progress_seconds=args.progress_seconds)
    except StopWhileDatabaseDown:
        return _fail("stopped while the database was unreachable; the unapplied batch will be re-read", 1)
    except Exception as exc:  # a defect or a fatal broker error: say so in one line; nothing was committed
        log.error({"event": "failed", "error": repr(exc)[:500]}, exc_info=True)
        return _fail(
            f"stopped by an unexpected error ({type(exc).__name__}: {exc}); the batch in hand will be re-read", 1
        )
    finally:
        source.close()
    seconds = time.monotonic() - started
    log.info(
        {
            "event": "done",
            "lines": totals.lines,
            "events": dict(totals.events),
            "rejected": dict(totals.rejected),
            "rejected_stored": totals.rejected_stored,
            "batches": totals.batches,
            "seconds": round(seconds, 3),
            "lines_per_s": round(totals.lines / seconds, 1) if seconds > 0 else None,
        }
    )
    return 0


def quality(args: argparse.Namespace) -> int:
    import json

    from data_parsing import quality as q
    from data_parsing.config import ParserSettings
    from data_parsing.parser import _TIME_RE, to_time
    from db_utils import queries
    from db_utils.engine import get_engine

    try:
        settings = ParserSettings.from_env()
    except ValueError as exc:
        return _fail(str(exc))
    if not _TIME_RE.fullmatch(args.since):
        return _fail(f"--since must be an ISO-8601 time like 2026-11-25T16:00:00 (optionally with Z or an "
                     f"offset), got {args.since!r}")
    try:
        since = to_time(args.since)
    except (ValueError, OverflowError):
        return _fail(f"--since is not a calendar time: {args.since!r}")
    seconds = args.window_seconds if args.window_seconds is not None else settings.quality_window_seconds
    min_count = args.min_count if args.min_count is not None else settings.quality_min_count
    if seconds <= 0 or min_count < 1:
        return _fail("--window-seconds must be positive and --min-count at least 1")
    url = args.database_url or settings.database_url
    problem = _database_problem(url)
    if problem:
        return _fail(problem)
    with get_engine(url).connect() as conn:
        rows = queries.stream_quality_rows(conn, since)
    windows = q.windows_from_store(rows, seconds, min_count)
    print(json.dumps(q.report(windows, since, seconds, min_count), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_parsing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="ingest a log stream into the SQL store")
    p.add_argument("--source", required=True, help="file:PATH, - (stdin) or kafka://HOST:PORT/TOPIC")
    p.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: DATABASE_URL)")
    p.add_argument("--batch-size", type=int, default=None, help="lines a transaction (PARSER_BATCH_SIZE)")
    p.add_argument("--batch-seconds", type=float, default=None, help="max age of a batch (PARSER_BATCH_SECONDS)")
    p.add_argument("--metrics-port", type=int, default=None, help="/metrics port, 0 = off (PARSER_METRICS_PORT)")
    p.add_argument("--max-idle", type=float, default=None, help="exit after this many seconds without a line")
    p.add_argument("--start-timeout", type=float, default=10.0, help="seconds to reach the broker at start")
    p.add_argument("--progress-seconds", type=float, default=5.0, help="seconds between progress lines")
    p = sub.add_parser("quality", help="print the stream's drift statistics since a time, from the store (JSON)")
    p.add_argument("--since", required=True, help="ISO-8601 time (UTC unless it carries Z or an offset)")
    p.add_argument("--window-seconds", type=float, default=None, help="window (PARSER_QUALITY_WINDOW_SECONDS)")
    p.add_argument("--min-count", type=int, default=None, help="observations to score (PARSER_QUALITY_MIN_COUNT)")
    p.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: DATABASE_URL)")
    args = parser.parse_args(argv)
    logs.setup()
    if args.command == "quality":
        return quality(args)
    logging.getLogger("data_parsing.sources").setLevel(logging.INFO)
    return ingest(args)


if __name__ == "__main__":
    sys.exit(main())
