"""Starting engines on this machine: free ports, waits, the PostgreSQL binaries, Kafka topics and lines.

One owner for what `scripts/fleet.py` and the test fixtures (tests/fixtures/) both need to start
PostgreSQL, Tansu and the rest on loopback; the fixtures import these names from here. No pytest, so the
fleet runs without the test tools.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1, what: str = "service") -> None:
    """Poll `check` until it returns True, or raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pg_bin() -> str | None:
    """The newest installed PostgreSQL server's bin directory (Debian's layout), None without one."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def pg_as_postgres(workdir: str) -> list[str]:
    """The command prefix that runs PostgreSQL's tools in `workdir`: as root, `workdir` is given to the
    postgres user and the tools run through runuser (initdb refuses root); otherwise nothing."""
    if os.geteuid() != 0:
        return []
    shutil.chown(workdir, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--"]


def pg_initdb_argv(bindir: str, datadir: str) -> list[str]:
    """initdb of a throw-away cluster: trust authentication on loopback, superuser postgres, no fsync."""
    return [f"{bindir}/initdb", "-D", datadir, "-A", "trust", "-U", "postgres", "--no-sync"]


def pg_start_argv(bindir: str, datadir: str, port: int, sockdir: str, log: str) -> list[str]:
    """pg_ctl start of that cluster on 127.0.0.1:`port` (socket in `sockdir`), durability off, waiting."""
    opts = f"-p {port} -k {sockdir} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
    return [f"{bindir}/pg_ctl", "-D", datadir, "-o", opts, "-l", log, "-w", "start"]


def create_topic(bootstrap: str, topic: str, partitions: int = 4, timeout: float = 30.0) -> None:
    """Create `topic` with `partitions` partitions and wait until the broker reports all of them."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=timeout)

    def ready() -> bool:
        meta = admin.list_topics(topic=topic, timeout=5)
        return topic in meta.topics and len(meta.topics[topic].partitions) == partitions

    wait_for(ready, timeout=timeout, what=f"topic {topic}")


def produce_lines(bootstrap: str, topic: str, lines: list[bytes],
                  key_of: Callable[[bytes], bytes | None] | None = None) -> None:
    """Produce each line as one message (keyed by `key_of(line)` when given) and wait for delivery."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for line in lines:
        key = key_of(line) if key_of else None
        while True:
            try:
                producer.produce(topic, value=line, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or errors:
        raise RuntimeError(f"{remaining} undelivered, errors: {errors[:3]}")
