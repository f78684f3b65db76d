"""The fleet of scripts/fleet.py on real engines (PostgreSQL, `chroma run`, Tansu, gunicorn x2, nginx,
Prometheus), on a 150-user slice of the MovieLens demo: kill -9 of a service instance under load through
nginx, kill -9 of a parser mid-stream, rolling releases (one that takes, one that rolls back) under load.

One fleet for the module (`up` takes most of the time); each test leaves it with both instances and both
parsers running. Bounded by timeouts on every wait, never by a timed assertion."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from db_utils import migrate
from db_utils.engine import create
from evaluation.offline import slice_demo
from evaluation.simulator.movielens import write_movielens
from tests.fixtures.log_streams import comparable_state, corrupted_stream, ingest_cmd
from tests.fixtures.prometheus import query
from tests.fixtures.services import require_binary, unavailable, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "scripts" / "fleet.py"


def _fleet_module():
    spec = importlib.util.spec_from_file_location("fleet", FLEET)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fleet = _fleet_module()


@dataclass
class Fleet:
    dir: Path
    env: dict[str, str]
    events: Path
    users: list[int]
    produced: list[bytes] = field(default_factory=list)  # every line produced to the topic, in order

    def produce(self, bootstrap: str, lines: list[bytes]) -> None:
        fleet.produce_lines(bootstrap, fleet.TOPIC, lines, key_of=fleet.user_key)
        self.produced.extend(lines)

    def store_matches_a_clean_ingest(self, database_url: str, tmp_path: Path) -> None:
        """The fleet's store equals one clean single-parser pass over every line produced so far."""
        want = _reference_store(tmp_path, self.produced)
        engine = create(database_url)
        try:
            got = comparable_state(engine)
        finally:
            engine.dispose()
        for table in want:
            missing, extra_rows = set(want[table]) - set(got[table]), set(got[table]) - set(want[table])
            assert not missing and not extra_rows, f"{table}: {len(missing)} missing, {len(extra_rows)} extra"
            assert got[table] == want[table], f"{table}: same rows, different multiplicities"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(FLEET), *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def status(self) -> dict:
        proc = self.run("status", timeout=30)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def running_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """`fleet.py up` on the demo slice (short scrape interval, small warm-up); `down` afterwards."""
    for binary in ("nginx", "prometheus"):
        require_binary(binary, f"/usr/sbin/{binary}")
    if fleet.pg_bin() is None:
        unavailable("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    root = tmp_path_factory.mktemp("fleet")
    write_movielens(str(root / "full"))
    catalog, events = slice_demo(str(root / "full" / "catalog.csv"), str(root / "full" / "events.log"),
                                 str(root / "slice"), users=150, seed=3)
    users = sorted({int(line.split(",")[1]) for line in Path(events).read_text().splitlines()})
    # Not under pytest's 0700 temp root: as root, PostgreSQL runs as the postgres user and must reach it.
    state_dir = Path(tempfile.mkdtemp(prefix="fleet-test-"))
    state_dir.chmod(0o755)
    env = {**os.environ, "FLEET_DIR": str(state_dir), "FLEET_SCRAPE_INTERVAL": "1s", "FLEET_RESTART_DELAY": "5",
           "NEIGHBOUR_WARM_COUNT": "200", "MODEL_POLL_SECONDS": "1", "PYTHONPATH": str(ROOT)}
    handle = Fleet(state_dir, env, Path(events), users,
                   [line for line in Path(events).read_bytes().splitlines() if line.strip()])
    try:
        proc = handle.run("up", "--catalog", catalog, "--events", events, "--timeout", "240", timeout=420)
        assert proc.returncode == 0, f"fleet up failed: {proc.stderr[-3000:]}"
        yield handle
    finally:
        down = handle.run("down", timeout=120)
        assert down.returncode == 0, down.stderr
        assert json.loads(handle.run("down", timeout=60).stdout) == {"stopped": []}  # idempotent
        shutil.rmtree(state_dir, ignore_errors=True)


@dataclass
class Load:
    """Client threads calling GET /recommend/<user> through nginx until stopped; every answer recorded."""

    url: str
    users: list[int]
    threads: int = 3
    answers: list[tuple[int, int | str, str]] = field(default_factory=list)  # (user, status|error, version)
    times: list[tuple[float, float]] = field(default_factory=list)  # each answer's (sent, received), monotonic
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _loop(self, offset: int) -> None:
        mine = self.users[offset::self.threads]  # each user's requests come from one thread, one at a time
        i = 0
        while not self._stop.is_set():
            user = mine[i % len(mine)]
            i += 1
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/recommend/{user}", timeout=20) as response:
                    response.read()
                    answer: tuple[int, int | str, str] = (user, response.status,
                                                         response.headers.get("X-Model-Version", ""))
            except urllib.error.HTTPError as exc:
                answer = (user, exc.code, "")
            except OSError as exc:
                answer = (user, f"{type(exc).__name__}: {exc}", "")
            with self._lock:
                self.answers.append(answer)
                self.times.append((sent, time.monotonic()))

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def count(self) -> int:
        return len(self.answers)

    def failures(self) -> Counter:
        return Counter(str(status) for _, status, _ in self.answers if status != 200)


def _answers_after(load: Load, n: int) -> bool:
    start = load.count()
    wait_for(lambda: load.count() >= start + n, timeout=60, what=f"{n} more answers")
    return True


def _service(status: dict, name: str) -> dict:
    return next(s for s in status["services"] if s["name"] == name)


def _back(handle: Fleet, name: str, old_pid: int) -> bool:
    entry = _service(handle.status(), name)
    if entry["pid"] == old_pid or not entry["alive"]:
        return False
    with urllib.request.urlopen(f"{entry['url']}/ready", timeout=2) as response:
        return response.status == 200


def test_kill_9_of_a_service_instance_under_load_loses_no_request(running_fleet: Fleet) -> None:
    status = running_fleet.status()
    victim = _service(status, "service-0")
    instance = victim["url"].removeprefix("http://")
    with Load(status["url"], running_fleet.users) as load:
        _answers_after(load, 30)
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: _back(running_fleet, "service-0", victim["pid"]), timeout=90, interval=0.5,
                 what="service-0 restarted by the supervisor")
        _answers_after(load, 30)
    assert load.failures() == Counter(), f"{load.failures()} of {load.count()} answers failed"
    after = _service(running_fleet.status(), "service-0")
    assert after["restarts"] >= 1 and after["url"] == victim["url"]
    # Prometheus saw it down (a failed scrape) and now up again.
    prometheus = status["prometheus"]

    def scraped_up() -> bool:
        result = query(prometheus, f'up{{job="service",instance="{instance}"}}')["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_for(scraped_up, timeout=30, what="Prometheus scraping the restarted instance")
    seen = query(prometheus, f'min_over_time(up{{job="service",instance="{instance}"}}[5m])')["data"]["result"]
    assert seen and seen[0]["value"][1] == "0", f"Prometheus never marked {instance} down: {seen}"


def _reference_store(tmp_path: Path, lines: list[bytes]) -> dict:
    """The store one clean single-parser pass over `lines` leaves (SQLite, the parser's file source)."""
    path = tmp_path / "all.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    url = f"sqlite:///{tmp_path}/reference.db"
    migrate.upgrade(url)
    subprocess.run(ingest_cmd(f"file:{path}", url), cwd=ROOT, check=True, capture_output=True, timeout=300)
    engine = create(url)
    try:
        return comparable_state(engine)
    finally:
        engine.dispose()


def test_kill_9_of_a_parser_mid_stream_loses_and_doubles_nothing(running_fleet: Fleet, tmp_path: Path) -> None:
    status = running_fleet.status()
    bootstrap = status["kafka"].rsplit("/", 1)[0]
    extra = corrupted_stream(str(tmp_path / "extra.log"), events=6000, seed=29)
    victim = next(p for p in status["parsers"] if p["name"] == "parser-0")
    chunks = [extra[i:i + 500] for i in range(0, len(extra), 500)]
    for n, chunk in enumerate(chunks):
        running_fleet.produce(bootstrap, chunk)
        if n == len(chunks) // 2:
            os.kill(victim["pid"], signal.SIGKILL)
        time.sleep(0.2)
    wait_for(lambda: fleet.group_caught_up(bootstrap), timeout=120, interval=1.0, what="the group's ingest")
    parser = next(p for p in running_fleet.status()["parsers"] if p["name"] == "parser-0")
    assert parser["alive"] and parser["pid"] != victim["pid"] and parser["restarts"] >= 1
    running_fleet.store_matches_a_clean_ingest(status["database_url"], tmp_path)


def test_rolling_release_under_load_answers_200_and_a_failed_one_rolls_back(running_fleet: Fleet) -> None:
    status = running_fleet.status()
    before = {s["name"]: s["pid"] for s in status["services"]}
    with Load(status["url"], running_fleet.users) as load:
        _answers_after(load, 20)
        good = running_fleet.run("release", "--roles", "services", "--env", "RECOMMEND_HISTORY_SIZE=40",
                                 timeout=240)
        _answers_after(load, 20)
        bad = running_fleet.run("release", "--env", "RANK_N_RESULTS=0", "--ready-timeout", "30", timeout=240)
        _answers_after(load, 20)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["released"] == [{"name": "service-0", "released": True},
                                                   {"name": "service-1", "released": True}]
    assert bad.returncode == 1 and json.loads(bad.stdout)["rolled_back"] == "service-0", bad.stdout + bad.stderr
    assert load.failures() == Counter(), f"{load.failures()} of {load.count()} answers failed"
    versions = {version for _, _, version in load.answers}
    assert len(versions) == 1 and "" not in versions, f"no promotion ran, yet versions {versions}"
    after = running_fleet.status()
    for service in after["services"]:
        assert service["alive"] and service["pid"] != before[service["name"]]
    state = json.loads((running_fleet.dir / "state.json").read_text())
    envs = {s["name"]: s["env"] for s in state["services"]}
    assert "RANK_N_RESULTS" not in envs["service-0"] and envs["service-0"]["RECOMMEND_HISTORY_SIZE"] == "40"
    assert " down;" not in (running_fleet.dir / "nginx" / "nginx.conf").read_text()


def test_a_release_rolls_both_parsers_under_a_producing_stream_losing_and_doubling_nothing(
        running_fleet: Fleet, tmp_path: Path) -> None:
    status = running_fleet.status()
    bootstrap = status["kafka"].rsplit("/", 1)[0]
    before = {p["name"]: (p["pid"], p["restarts"]) for p in status["parsers"]}
    lines = corrupted_stream(str(tmp_path / "rolling.log"), events=12000, seed=37)
    chunks = [lines[i:i + 200] for i in range(0, len(lines), 200)]
    release = subprocess.Popen([sys.executable, str(FLEET), "release", "--env", "PARSER_BATCH_SECONDS=0.5"],
                               cwd=ROOT, env=running_fleet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:  # the stream keeps coming while the release rolls the instances, then each parser
        for chunk in chunks:
            running_fleet.produce(bootstrap, chunk)
            if release.poll() is None:
                time.sleep(0.5)
        out, err = release.communicate(timeout=420)
    finally:
        if release.poll() is None:
            release.kill()
    assert release.returncode == 0, out + err
    assert [r["name"] for r in json.loads(out)["released"]] == ["service-0", "service-1", "parser-0", "parser-1"]
    assert all(r["released"] for r in json.loads(out)["released"]), out
    wait_for(lambda: fleet.group_caught_up(bootstrap), timeout=120, interval=1.0, what="the group's ingest")
    for parser in running_fleet.status()["parsers"]:
        assert parser["alive"] and parser["pid"] != before[parser["name"]][0]
        assert parser["restarts"] == before[parser["name"]][1], "rolled by the release, not restarted on a crash"
    state = json.loads((running_fleet.dir / "state.json").read_text())
    assert all(p["env"]["PARSER_BATCH_SECONDS"] == "0.5" for p in state["parsers"])
    running_fleet.store_matches_a_clean_ingest(status["database_url"], tmp_path)


# ------------------------------------------------------------ the pure parts of fleet.py (no fleet needed)


def test_the_drained_instance_alone_is_marked_down_and_users_stick_to_an_instance() -> None:
    text = fleet.nginx_conf("/p", 8080, False, [8001, 8002], frozenset({8002}))
    assert "server 127.0.0.1:8001 max_fails=1 fail_timeout=5s;" in text
    assert "server 127.0.0.1:8002 max_fails=1 fail_timeout=5s down;" in text
    assert text.count(" down;") == 1 and "upstream recommender {" in text and "hash $uri consistent;" in text
    assert "listen 127.0.0.1:8080;" in text and "${" not in text


def test_rendered_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    binary = require_binary("nginx", "/usr/sbin/nginx")
    for sub in ("logs", "tmp"):
        (tmp_path / sub).mkdir()
    conf = fleet.nginx_conf(str(tmp_path), 8080, os.geteuid() == 0, [8001, 8002])
    assert "proxy_next_upstream error timeout http_502 http_503;" in conf and "$host" in conf
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.run([binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-t"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_prometheus_config_scrapes_every_instance_with_the_committed_job_names() -> None:
    config = fleet.prometheus_config(["127.0.0.1:1", "127.0.0.1:2"], ["127.0.0.1:3"], "127.0.0.1:4", "2s")
    jobs = {job["job_name"]: job["static_configs"][0] for job in config["scrape_configs"]}
    assert jobs["service"] == {"targets": ["127.0.0.1:1", "127.0.0.1:2"], "labels": {"service": "recommender"}}
    assert jobs["parser"]["targets"] == ["127.0.0.1:3"] and jobs["trainer"]["targets"] == ["127.0.0.1:4"]
    assert config["global"]["scrape_interval"] == "2s"


def test_release_settings_and_commands_without_a_fleet(tmp_path: Path) -> None:
    assert fleet.parse_env_pairs(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(fleet.FleetError, match="is not KEY=VALUE"):
        fleet.parse_env_pairs(["A"])
    env = {**os.environ, "FLEET_DIR": str(tmp_path / "none")}
    for command in ("status", "release"):
        proc = subprocess.run([sys.executable, str(FLEET), command], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1 and "no fleet runs from" in proc.stderr
    proc = subprocess.run([sys.executable, str(FLEET), "down"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"stopped": []}


def _served_keys(url: str) -> set[tuple[int, str]]:
    from sqlalchemy import text

    engine = create(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT user_id, ts FROM recommendations_served"))
            return {(int(user), ts.isoformat()) for user, ts in rows}
    finally:
        engine.dispose()


def test_postgresql_restarted_under_load_keeps_answers_200_and_the_parsers_resume(
        running_fleet: Fleet, tmp_path: Path) -> None:
    from data_parsing.parser import RecommendationEvent, parse

    status = running_fleet.status()
    bootstrap = status["kafka"].rsplit("/", 1)[0]
    pg = json.loads((running_fleet.dir / "state.json").read_text())["postgres"]
    lines = corrupted_stream(str(tmp_path / "more.log"), events=2000, seed=31)
    events = [parse(line.decode(errors="replace")) for line in lines]
    want = {(e.user_id, e.ts.isoformat()) for e in events if isinstance(e, RecommendationEvent)}
    assert want and not want & _served_keys(status["database_url"])
    with Load(status["url"], running_fleet.users) as load:
        _answers_after(load, 20)
        fleet.stop_postgres(pg)
        running_fleet.produce(bootstrap, lines)
        _answers_after(load, 20)  # served while the store is down
        fleet.resume_postgres(pg)
        _answers_after(load, 20)
    assert load.failures() == Counter(), f"{load.failures()} of {load.count()} answers failed"
    wait_for(lambda: fleet.group_caught_up(bootstrap), timeout=120, interval=1.0, what="the parsers' resume")
    missing = want - _served_keys(status["database_url"])
    assert not missing, f"{len(missing)} of {len(want)} served lines from the outage never reached the store"
    assert all(p["alive"] for p in running_fleet.status()["parsers"])


def _training(handle: Fleet, *args: str, env: dict[str, str] | None = None) -> dict:
    """`python -m training ARGS` against the fleet's stores; its one JSON line."""
    state = json.loads((handle.dir / "state.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**handle.env, **fleet.base_env(state), **(env or {})}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_promotions_during_a_rolling_release_never_take_a_user_back_to_an_older_version(
        running_fleet: Fleet) -> None:
    state = json.loads((running_fleet.dir / "state.json").read_text())
    ports = [s["port"] for s in state["services"]]
    old = fleet.wait_coherent(ports, 60)
    # Two more fitted versions beside the served one (slightly different recipes; the gate may promote or
    # reject each, either way they can be promoted by hand), then the served one again.
    order = [old]
    for weight in ("0.06", "0.07"):
        made = _training(running_fleet, "run", "--catalog", state["catalog"], env={"RANK_POPULARITY_WEIGHT": weight})
        assert made["status"] in ("active", "rejected") and made["version"] not in order, made
        order.append(made["version"])
    assert _training(running_fleet, "promote", old)["active"] == old
    fleet.wait_coherent(ports, 60, want=old)
    before = {s["name"]: s["pid"] for s in running_fleet.status()["services"]}
    conf = running_fleet.dir / "nginx" / "nginx.conf"
    status = running_fleet.status()
    promotions: list[tuple[float, float]] = []  # (sent, returned) of each `fleet.py promote`

    def promote(version: str) -> None:
        sent = time.monotonic()
        proc = running_fleet.run("promote", version, timeout=300)
        assert proc.returncode == 0, proc.stderr
        promotions.append((sent, time.monotonic()))

    # 12 users, 4 per client thread: each user asks again every few hundred ms, so an instance that
    # switches later than the other would show in some user's answers (round robin does, here).
    with Load(status["url"], running_fleet.users[:12]) as load:
        _answers_after(load, 20)
        release = subprocess.Popen(
            [sys.executable, str(FLEET), "release", "--roles", "services", "--env", "RECOMMEND_HISTORY_SIZE=45"],
            cwd=ROOT, env=running_fleet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # the first while service-0 is drained and restarting (only service-1 in nginx) ...
            wait_for(lambda: _service(running_fleet.status(), "service-0")["pid"] != before["service-0"],
                     timeout=120, interval=0.2, what="the release restarting service-0")
            promote(order[1])
            _answers_after(load, 10)
            # ... the second once service-0 is back beside service-1 (or, if that moment passed, later)
            wait_for(lambda: " down;" not in conf.read_text() or release.poll() is not None, timeout=180,
                     interval=0.1, what="service-0 put back")
            promote(order[2])
            out, err = release.communicate(timeout=300)
        finally:
            if release.poll() is None:
                release.kill()
        _answers_after(load, 30)
    assert release.returncode == 0 and json.loads(out)["released"] == [
        {"name": "service-0", "released": True}, {"name": "service-1", "released": True}], out + err
    assert load.failures() == Counter(), f"{load.failures()} of {load.count()} answers failed"
    answers = list(zip(load.answers, load.times, strict=True))
    assert {version for (_, _, version), _ in answers} == set(order), order
    early = Counter(version for (_, _, version), (_, got) in answers if got < promotions[0][0])
    late = Counter(version for (_, _, version), (sent, _) in answers if sent > promotions[-1][1])
    assert set(early) == {old} and set(late) == {order[2]}, f"before the promotions {early}, after them {late}"
    newest: dict[int, int] = {}
    for (user, _, version), _ in answers:  # in the order each user received them
        rank = order.index(version)
        assert rank >= newest.get(user, 0), f"user {user} got {version} after {order[newest[user]]}"
        newest[user] = rank
