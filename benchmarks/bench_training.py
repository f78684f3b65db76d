"""Benchmark of one training cycle (`python -m training run`) at production scale, and of the service during one.

Builds a store the way production does (issue 14): `evaluation.simulator synth` (default 1,000,000 users,
27,000 movies, 2,000,000 log lines), `db_utils migrate`, `data_parsing ingest --source file:...`,
`embeddings build --catalog ...` (timed apart, though the cycle's embed step would do it), then:

1. cycle: `python -m training run --catalog ...` under `/usr/bin/time -v`: wall time, the per-step `timings`
   of the JSON it prints, and its peak RSS;
2. bare SVD: `scipy.sparse.linalg.svds` (k = CollabConfig().dim) of the same user-item matrix, in this run;
3. latency: the service (gunicorn, started as benchmarks/bench_service.py does) at --rate requests/s from
   the open-loop driver of bench_service, in --rate-seconds windows: without a cycle (before and after),
   then while a second `training run` works on --extra-events more synth lines (seed + 1) ingested
   beforehand, then one window across a switch of the served version (the second cycle's version is
   promoted by hand when the gate rejected it, so the service's reload is measured too).

Goals (issue 14): whole cycle <= 5 min, peak RSS <= 4 GB, p99 during a cycle <= 2x p99 without (the median
window p99 of each side: the machine is shared, and one burst of load elsewhere spoils one window).
Ends with one summary line. Example (quick): python -m benchmarks.bench_training --users 100000 --events 300000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_service import mix_paths, paced, wait_warm  # noqa: E402
from tests.fixtures.inference_server import gunicorn_service  # noqa: E402

MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def run_timed(args: list[str], env: dict[str, str], log_path: str) -> tuple[float, int, str]:
    """Run `python ARGS` under /usr/bin/time -v; returns (seconds, peak RSS KiB, stdout). Fails loudly."""
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(["/usr/bin/time", "-v", sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=log, text=True)
    seconds = time.perf_counter() - started
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        err = fh.read()
    if done.returncode != 0:
        raise RuntimeError(f"`python {' '.join(args)}` exited {done.returncode}; see {log_path}:\n{err[-2000:]}")
    match = MAX_RSS.search(err)
    return seconds, int(match[1]) if match else 0, done.stdout


def last_json(stdout: str) -> dict:
    """The last JSON line a command printed."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in:\n{stdout[-2000:]}")


def load() -> str:
    """The machine's load averages (the machine is shared)."""
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def synth(out: str, users: int, movies: int, events: int, seed: int, env: dict[str, str]) -> None:
    if not os.path.exists(os.path.join(out, "events.log")):
        subprocess.run([sys.executable, "-m", "evaluation.simulator", "synth", "--users", str(users), "--movies",
                        str(movies), "--events", str(events), "--seed", str(seed), "--out", out],
                       check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def bare_svd(url: str) -> tuple[float, tuple[int, int], int]:
    """Seconds of svds(k=CollabConfig().dim) on the store's user-item matrix, its shape and non-zeros."""
    from scipy.sparse.linalg import svds

    from db_utils import model_versions as mv
    from db_utils.engine import get_engine
    from embeddings.collaborative import CollabConfig, interaction_matrix

    engine = get_engine(url)
    with engine.connect() as conn:
        events = mv.interaction_events(conn)
    engine.dispose()
    matrix = interaction_matrix(sorted({(e[0], e[1]) for e in events})).matrix.tocsr().astype(np.float64)
    v0 = np.random.default_rng(0).uniform(-1, 1, min(matrix.shape))
    started = time.perf_counter()
    svds(matrix, k=CollabConfig().dim, v0=v0)
    return time.perf_counter() - started, matrix.shape, matrix.nnz


def windows(host: str, port: int, paths: list[str], rate: float, seconds: float, until) -> list[dict]:
    """Paced windows of `seconds` until `until()` is true (at least one)."""
    out = [paced(host, port, paths, rate, seconds)]
    while not until():
        out.append(paced(host, port, paths, rate, seconds))
    return out


def describe(runs: list[dict]) -> str:
    return ", ".join(f"p99 {r['p99']:.1f} ms (p50 {r['p50']:.1f}, {r['achieved']:.0f} req/s)" for r in runs)


def served_version(host: str, port: int, path: str) -> str:
    """The X-Model-Version header of one answer."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.headers.get("X-Model-Version", "?")
    finally:
        conn.close()


def build_and_cycle(args: argparse.Namespace, env: dict[str, str], workdir: str, url: str) -> tuple[float, int, float]:
    """Synthesize, migrate, ingest, embed, run cycle 1 and the bare svds; returns (cycle s, cycle RSS KiB, svds s)."""
    base = os.path.join(workdir, "synth")
    catalog = os.path.join(base, "catalog.csv")
    t0 = time.perf_counter()
    synth(base, args.users, args.movies, args.events, args.seed, env)
    print(f"synth            : {time.perf_counter() - t0:7.1f} s")
    for name, cmd in (("migrate", ["-m", "db_utils", "migrate"]),
                      ("ingest", ["-m", "data_parsing", "ingest", "--source", f"file:{base}/events.log",
                                  "--metrics-port", "0"]),
                      ("embeddings build", ["-m", "embeddings", "build", "--catalog", catalog])):
        seconds, rss, _ = run_timed(cmd, env, os.path.join(workdir, f"{name.replace(' ', '-')}.log"))
        print(f"{name:<17}: {seconds:7.1f} s  peak RSS {rss / 1024:6.0f} MiB  ({load()})")

    print(f"cycle starts     : {load()}")
    seconds, rss, stdout = run_timed(["-m", "training", "run", "--catalog", catalog], env,
                                     os.path.join(workdir, "cycle-1.log"))
    doc = last_json(stdout)
    steps = doc.get("timings", {})
    print(f"cycle 1          : {seconds:7.1f} s wall  peak RSS {rss / 1024:6.0f} MiB  status {doc.get('status')} "
          f"{doc.get('version')}  steps {json.dumps(steps)}  ({load()})")
    popular = ((doc.get("gate") or {}).get("most_popular") or {}).get("hit_rate_at_20")
    print(f"gate             : candidate {json.dumps(doc.get('metrics'))}; most popular hit rate at 20 {popular}")

    from embeddings.collaborative import CollabConfig

    dim = CollabConfig().dim
    svd_seconds, shape, nnz = bare_svd(url)
    print(f"bare svds        : {svd_seconds:7.1f} s  k={dim} "
          f"on {shape[0]:,} x {shape[1]:,}, {nnz:,} non-zeros ({load()})")
    return seconds, rss, svd_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--events", type=int, default=2_000_000, help="log lines of the first store")
    parser.add_argument("--extra-events", type=int, default=200_000, help="log lines ingested before the 2nd cycle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=300.0, help="requests/s of the paced latency windows")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="length of one paced window")
    parser.add_argument("--baseline-windows", type=int, default=3, help="paced windows without a cycle")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-latency", action="store_true", help="skip the service part")
    parser.add_argument("--workdir", default=None, help="keep the store and logs here (default: temp)")
    parser.add_argument("--reuse-store", action="store_true",
                        help="with a built --workdir: skip to the latency part (new extra lines, cycle 2)")
    parser.add_argument("--trainer-nice", type=int, default=0, help="run cycle 2 under `nice -n N`")
    parser.add_argument("--trainer-threads", type=int, default=0,
                        help="cycle 2 with OMP/OPENBLAS/MKL_NUM_THREADS=N (default: the libraries' own)")
    args = parser.parse_args(argv)

    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="bench-training-"))
    os.makedirs(workdir, exist_ok=True)
    url = f"sqlite:///{os.path.join(workdir, 'recsys.db')}"
    env = {**os.environ, "PYTHONPATH": ROOT, "DATABASE_URL": url, "CHROMA_PATH": os.path.join(workdir, "chroma"),
           "EMBED_ONNX_DIR": os.path.join(workdir, "models"), "ANONYMIZED_TELEMETRY": "False",
           "TRAIN_METRICS_PORT": "0", "POPULAR_SNAPSHOT": os.path.join(workdir, "popular.json"),
           "PROVENANCE_LOG": os.path.join(workdir, "provenance.log")}
    # each run's extra lines are new (another seed), so its second cycle has something to train on
    runs = len([d for d in os.listdir(workdir) if d.startswith("synth-extra")])
    extra = os.path.join(workdir, "synth-extra" + (f"-{runs}" if runs else ""))
    print(f"workdir {workdir}; {os.cpu_count()} cpus; {load()}")

    if args.reuse_store and os.path.exists(os.path.join(workdir, "recsys.db")):
        cycle_seconds, cycle_rss, svd_seconds = float("nan"), 0, float("nan")
        print("store            : reused (synth, ingest, embeddings build and cycle 1 skipped)")
    else:
        cycle_seconds, cycle_rss, svd_seconds = build_and_cycle(args, env, workdir, url)

    ratio = float("nan")
    if not args.no_latency:
        synth(extra, args.users, args.movies, args.extra_events, args.seed + 1 + runs, env)
        with gunicorn_service({**env, "GUNICORN_WORKERS": str(args.workers), "MODEL_POLL_SECONDS": "5"},
                              workers=args.workers, workdir=workdir) as service:
            host, port = "127.0.0.1", int(service.url.rsplit(":", 1)[1])
            wait_warm(service)
            from db_utils.engine import get_engine
            with get_engine(url).connect() as conn:
                from sqlalchemy import text
                known = [r[0] for r in conn.execute(text("SELECT DISTINCT user_id FROM watched LIMIT 200000"))]
            paths = mix_paths(random.Random(args.seed).sample(known, min(len(known), 20_000)), args.users, 50_000,
                              args.seed)
            paced(host, port, paths, args.rate, 5)  # warm-up
            print(f"service answers  : X-Model-Version {served_version(host, port, paths[0])}")
            without = [paced(host, port, paths, args.rate, args.rate_seconds) for _ in range(args.baseline_windows)]
            print(f"no cycle, before : {describe(without)}  ({load()})")
            seconds, _, _ = run_timed(["-m", "data_parsing", "ingest", "--source", f"file:{extra}/events.log",
                                       "--metrics-port", "0"], env, os.path.join(workdir, "ingest-extra.log"))
            print(f"ingest extra     : {seconds:7.1f} s for {args.extra_events:,} lines")
            log_path = os.path.join(workdir, "cycle-2.log")
            nice = ["nice", "-n", str(args.trainer_nice)] if args.trainer_nice else []
            threads = {name: str(args.trainer_threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                    "MKL_NUM_THREADS")} if args.trainer_threads else {}
            print(f"cycle 2 runs as  : {' '.join(nice) or 'nice 0'}, {threads or 'default BLAS threads'}")
            with open(log_path, "w") as log:
                trainer = subprocess.Popen(["/usr/bin/time", "-v", *nice, sys.executable, "-m", "training", "run"],
                                           cwd=ROOT, env={**env, **threads}, stdout=subprocess.PIPE, stderr=log,
                                           text=True)
            started = time.perf_counter()
            during = windows(host, port, paths, args.rate, args.rate_seconds, lambda: trainer.poll() is not None)
            out, _ = trainer.communicate(timeout=3600)
            cycle2 = time.perf_counter() - started
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                rss2 = MAX_RSS.search(fh.read())
            doc2 = last_json(out) if trainer.returncode == 0 else {"status": f"exit {trainer.returncode}"}
            print(f"cycle 2          : {cycle2:7.1f} s wall  peak RSS {int(rss2[1]) / 1024 if rss2 else 0:6.0f} MiB  "
                  f"status {doc2.get('status')} {doc2.get('version')}  steps {json.dumps(doc2.get('timings'))}")
            print(f"during cycle     : {describe(during)}  ({load()})")
            after = [paced(host, port, paths, args.rate, args.rate_seconds) for _ in range(args.baseline_windows)]
            print(f"no cycle, after  : {describe(after)}  ({load()})")
            version = str(doc2.get("version", ""))
            if version.startswith("v"):
                if doc2.get("status") != "active":
                    run_timed(["-m", "training", "promote", version], env, os.path.join(workdir, "promote.log"))
                switch = paced(host, port, paths, args.rate, args.rate_seconds)
                print(f"version switch   : {describe([switch])} while the service moved to {version}; it now "
                      f"answers X-Model-Version {served_version(host, port, paths[0])}")
            without += after
            base_p99 = float(np.median([r["p99"] for r in without]))
            during_p99 = float(np.median([r["p99"] for r in during]))
            ratio = during_p99 / base_p99
            print(f"p99 median window: {during_p99:.1f} ms during a cycle, {base_p99:.1f} ms without "
                  f"(worst {max(r['p99'] for r in during):.1f} / {max(r['p99'] for r in without):.1f} ms)")
    cycle_ok = (cycle_seconds <= 300 and cycle_rss <= 4 * 1024 * 1024) or args.reuse_store
    ok = cycle_ok and (args.no_latency or ratio <= 2)
    print(f"SUMMARY training cycle {cycle_seconds:.0f} s (goal <= 300 s), peak RSS {cycle_rss / 1024 / 1024:.2f} GB "
          f"(goal <= 4 GB), bare svds {svd_seconds:.0f} s, p99 during a cycle / without = {ratio:.2f} (median windows; "
          f"goal <= 2); goals {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
