#!/usr/bin/env python3
"""Deploy one compose service to a new image; roll back to the previous image if it does not come ready.

Run by the GitLab deploy jobs on the team's VM runner (stdlib only: the VM needs python3, docker and
the compose plugin). The image each service runs is kept in an env file (`--images-file`, default
`images.env` in the compose project) that compose reads next to `.env`, so a later `docker compose up`
keeps the deployed versions:

    python3 deploy/deploy.py --project-dir /opt/movie-recommender --service service \
        --image registry.example.com/team/movie-recommender/service:1.4.0 \
        --ready-url http://127.0.0.1:8082/ready
    python3 deploy/deploy.py --project-dir /opt/movie-recommender --service trainer \
        --image registry.example.com/team/movie-recommender/trainer:0.3.0    # its health check decides

Steps: note the running image, pull the new one, recreate only that service, wait for readiness (the
URL answers 2xx, or without --ready-url the container's health check reports healthy), and on timeout
recreate the service on the previous image and wait for it again. Exit codes: 0 deployed, 1 rolled
back, 2 rollback failed or impossible, 3 bad arguments or a docker command failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class DeployError(Exception):
    """A docker command failed; the message is one sentence for the job log."""


@dataclass(frozen=True)
class Settings:
    """What to deploy where (from the command line)."""

    project_dir: Path
    service: str
    image: str
    compose_file: str = "docker-compose.yml"
    images_file: str = "images.env"
    ready_url: str | None = None
    timeout: float = 180.0
    interval: float = 2.0


def image_variable(service: str) -> str:
    """Compose variable holding a service's image: `service` -> SERVICE_IMAGE, `parser` -> PARSER_IMAGE."""
    return f"{service.upper().replace('-', '_')}_IMAGE"


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines (comments and blanks ignored) as a dict."""
    pairs = (
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def render_env(values: dict[str, str]) -> str:
    """The inverse of parse_env, sorted for stable diffs."""
    return "".join(f"{key}={value}\n" for key, value in sorted(values.items()))


def docker(*args: str) -> str:
    """Run `docker ARGS`, return its stdout; raise DeployError with its stderr on failure."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise DeployError(f"docker {' '.join(args)} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


class Compose:
    """The few compose operations a deploy needs, for one project directory."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.images_path = settings.project_dir / settings.images_file

    def _compose(self, *args: str) -> str:
        files = ["-f", str(self.settings.project_dir / self.settings.compose_file)]
        env_files = [f for f in (self.settings.project_dir / ".env", self.images_path) if f.exists()]
        return docker(
            "compose",
            "--project-directory",
            str(self.settings.project_dir),
            *files,
            *(arg for f in env_files for arg in ("--env-file", str(f))),
            *args,
        )

    def container(self) -> str | None:
        """Id of the service's running container, if any."""
        out = self._compose("ps", "-q", self.settings.service)
        return out.splitlines()[0] if out else None

    def current_image(self) -> str | None:
        """Image reference the running container was created from."""
        container = self.container()
        return docker("inspect", "--format", "{{.Config.Image}}", container) if container else None

    def health(self) -> str:
        """The container's health status (healthy, unhealthy, starting) or `missing`."""
        container = self.container()
        if not container:
            return "missing"
        return docker("inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", container)

    def run_image(self, image: str) -> None:
        """Record `image` for the service and recreate only that service on it."""
        values = parse_env(self.images_path.read_text()) if self.images_path.exists() else {}
        values[image_variable(self.settings.service)] = image
        self.images_path.write_text(render_env(values))
        self._compose("up", "-d", "--no-deps", "--force-recreate", self.settings.service)


def url_ready(url: str) -> bool:
    """True when `url` answers 2xx within 2 seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def wait_ready(is_ready: Callable[[], bool], timeout: float, interval: float) -> bool:
    """Poll `is_ready` until True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if is_ready():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def deploy(settings: Settings, compose: Compose, log: Callable[[str], None] = print) -> int:
    """Deploy settings.image to settings.service; roll back on readiness timeout. Returns the exit code."""
    if settings.ready_url:

        def ready() -> bool:
            return url_ready(settings.ready_url)
    else:

        def ready() -> bool:
            return compose.health() == "healthy"

    previous = compose.current_image()
    log(f"{settings.service}: running {previous or 'nothing'}; deploying {settings.image}")
    docker("pull", settings.image)
    compose.run_image(settings.image)
    if wait_ready(ready, settings.timeout, settings.interval):
        log(f"{settings.service}: {settings.image} is ready")
        return 0
    if not previous or previous == settings.image:
        log(f"{settings.service}: {settings.image} did not come ready; no previous image to roll back to")
        return 2
    log(
        f"{settings.service}: {settings.image} did not come ready within {settings.timeout:.0f} s; "
        f"rolling back to {previous}"
    )
    compose.run_image(previous)
    if wait_ready(ready, settings.timeout, settings.interval):
        log(f"{settings.service}: rolled back to {previous}, which is ready")
        return 1
    log(f"{settings.service}: rollback to {previous} did not come ready either")
    return 2


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="compose project directory")
    parser.add_argument("--service", required=True, help="compose service name: service, parser or trainer")
    parser.add_argument("--image", required=True, help="full image reference to deploy")
    parser.add_argument("--compose-file", default="docker-compose.yml")
    parser.add_argument("--images-file", default="images.env", help="env file recording each service's image")
    parser.add_argument(
        "--ready-url", help="URL answering 2xx when ready (default: the container's health check)"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between readiness checks")
    args = parser.parse_args(argv)
    return Settings(**vars(args))


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        return deploy(settings, Compose(settings))
    except DeployError as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
