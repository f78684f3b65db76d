"""Benchmark of the fleet's serving path: nginx in front of two service instances vs one instance alone.

Both sides serve the same store in the same run (the synthetic store of bench_service, or --store
movielens) and use the same number of gunicorn workers in all, so the difference is the extra hop and the
split into instances:

- direct: one gunicorn instance with 2 workers (GUNICORN_WORKERS=2), called without nginx;
- fleet: two gunicorn instances with 1 worker each (the fleet's layout, scripts/fleet.py) behind nginx,
  configured from deploy/fleet/nginx.conf.template exactly as `fleet.py up` renders it.

1. throughput: wrk on the /recommend mix (80% known, 15% unknown, 5% invalid ids), direct and fleet
   alternating for --rounds rounds, each side's best round (other load on the shared machine only lowers
   a round);
2. latency at a fixed rate (default 300 req/s, open loop from each request's due time, bench_service's
   driver), direct then fleet;
3. the hop's overhead: fleet minus direct, in req/s and in ms at p50 and p99.

Ends with one summary line. Example: python -m benchmarks.bench_fleet --events 300000 --workdir /tmp/bf
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_service import (  # noqa: E402
    LUA,
    mix_paths,
    open_store,
    paced,
    run_wrk,
    wait_warm,
)
from tests.fixtures.inference_server import Service, gunicorn_service  # noqa: E402
from tests.fixtures.services import free_port, port_open, wait_for  # noqa: E402


def _fleet_module() -> Any:
    """scripts/fleet.py (not a package): its nginx rendering is the one this benchmark uses."""
    spec = importlib.util.spec_from_file_location("fleet", os.path.join(ROOT, "scripts", "fleet.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def nginx_in_front(ports: list[int], workdir: str) -> Iterator[str]:
    """nginx from the fleet's template over the instances on `ports`; yields its URL, stops it after."""
    fleet = _fleet_module()
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir()
    port = free_port()
    (prefix / "nginx.conf").write_text(fleet.nginx_conf(str(prefix), port, os.geteuid() == 0, ports))
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is None and port_open(port), timeout=20, what="nginx")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def fmt(result: dict[str, float]) -> str:
    return (f"{result['rps']:7.0f} req/s  p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  "
            f"non-2xx {result['errors']:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["synthetic", "movielens"], default="synthetic")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--events", type=int, default=300_000, help="log lines the simulator writes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/fleet wrk rounds (best of each)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=300.0, help="requests/s of the paced latency runs")
    parser.add_argument("--rate-seconds", type=float, default=20.0)
    parser.add_argument("--warm-count", type=int, default=3000, help="NEIGHBOUR_WARM_COUNT of every worker")
    parser.add_argument("--workdir", default=None, help="keep the store here and reuse it (default: temp)")
    args = parser.parse_args(argv)

    workdir, env, known, max_user = open_store(args, "bench-fleet-")
    env.update({"NEIGHBOUR_WARM_COUNT": str(args.warm_count), "ACCESS_LOG": "0", "PROVENANCE_LOG": ""})
    sample = random.Random(args.seed).sample(known, min(len(known), 20_000))
    lua = LUA % (",".join(f'"{u}"' for u in sample), max_user)
    paths = mix_paths(known, max_user, 50_000, args.seed)

    with gunicorn_service(env, workers=2, workdir=workdir) as direct, \
            gunicorn_service(env, workers=1, workdir=workdir) as one, \
            gunicorn_service(env, workers=1, workdir=workdir) as two, \
            nginx_in_front([_port(one), _port(two)], workdir) as front:
        waited = max(wait_warm(s) for s in (direct, one, two))
        print(f"setup            : {args.store} store, neighbour caches warm after {waited:.0f} s; "
              f"direct {direct.url} (2 workers), fleet {front} -> 2 instances x 1 worker")
        run_wrk(direct.url, lua, 3, args.connections)
        run_wrk(front, lua, 3, args.connections)
        directs, fleets = [], []
        for round_no in range(1, args.rounds + 1):
            directs.append(run_wrk(direct.url, lua, args.seconds, args.connections))
            fleets.append(run_wrk(front, lua, args.seconds, args.connections))
            print(f"round {round_no}          : direct {directs[-1]['rps']:6.0f} req/s, fleet "
                  f"{fleets[-1]['rps']:6.0f} req/s = {fleets[-1]['rps'] / directs[-1]['rps']:.0%}  "
                  f"(load {os.getloadavg()[0]:.1f})")
        best_direct = max(directs, key=lambda r: r["rps"])
        best_fleet = max(fleets, key=lambda r: r["rps"])
        print(f"direct (wrk)     : {fmt(best_direct)}  (baseline, best of {args.rounds})")
        print(f"fleet  (wrk)     : {fmt(best_fleet)}  = {best_fleet['rps'] / best_direct['rps']:.0%} of direct")
        host = "127.0.0.1"
        paced_direct = paced(host, _port(direct), paths, args.rate, args.rate_seconds)
        paced_fleet = paced(host, int(front.rsplit(":", 1)[1]), paths, args.rate, args.rate_seconds)
        for name, result in (("direct", paced_direct), ("fleet ", paced_fleet)):
            print(f"{name} {args.rate:.0f} req/s : achieved {result['achieved']:.0f} req/s  "
                  f"p50 {result['p50']:.2f} ms  p95 {result['p95']:.2f} ms  p99 {result['p99']:.2f} ms  "
                  f"statuses {result['statuses']}"
                  f"{'  (baseline)' if name == 'direct' else ''}")
    hop_p50 = paced_fleet["p50"] - paced_direct["p50"]
    hop_p99 = paced_fleet["p99"] - paced_direct["p99"]
    print(f"extra hop        : {best_fleet['rps'] - best_direct['rps']:+.0f} req/s at saturation; "
          f"{hop_p50:+.2f} ms p50, {hop_p99:+.2f} ms p99 at {args.rate:.0f} req/s")
    print(f"SUMMARY fleet (nginx + 2x1 worker) {best_fleet['rps']:.0f} req/s vs direct (2 workers) "
          f"{best_direct['rps']:.0f} req/s ({best_fleet['rps'] / best_direct['rps']:.0%}); p99 at "
          f"{args.rate:.0f} req/s {paced_fleet['p99']:.1f} ms vs {paced_direct['p99']:.1f} ms "
          f"(hop {hop_p99:+.1f} ms); load {os.getloadavg()[0]:.1f}")
    return 0


def _port(service: Service) -> int:
    return int(service.url.rsplit(":", 1)[1])


if __name__ == "__main__":
    sys.exit(main())
