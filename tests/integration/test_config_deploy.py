"""deploy/deploy.py against a fake `docker` on PATH that records its calls and keeps a tiny state.

The fake runs a container per `compose up`, created from the image that the images env file names; an
image listed in FAKE_DOCKER_BROKEN never becomes healthy (nor ready, for the URL check).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from tests.fixtures.services import http_server

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "deploy.py"
OLD = "registry.example.com/team/movie-recommender/service:1.0.0"
NEW = "registry.example.com/team/movie-recommender/service:1.1.0"

FAKE_DOCKER = r'''#!PYTHON
"""Fake docker: records argv, keeps the running image in a JSON state file."""
import json, os, sys
args = sys.argv[1:]
state_path = os.environ["FAKE_DOCKER_STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {"image": None, "n": 0}
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
broken = os.environ.get("FAKE_DOCKER_BROKEN", "").split(",")
if args[0] == "pull":
    if args[1] in os.environ.get("FAKE_DOCKER_MISSING", "").split(","):
        sys.exit("Error response from daemon: manifest unknown")
elif args[0] == "compose":
    if "ps" in args:
        print(f"c{state['n']}" if state["image"] else "")
    elif "up" in args:
        env_files = [args[i + 1] for i, a in enumerate(args) if a == "--env-file"]
        values = {}
        for path in env_files:
            for line in open(path):
                if "=" in line:
                    key, value = line.strip().split("=", 1)
                    values[key] = value
        state = {"image": values[args[-1].upper() + "_IMAGE"], "n": state["n"] + 1}
elif args[0] == "inspect":
    if ".Config.Image" in args[2]:
        print(state["image"])
    else:
        print("unhealthy" if state["image"] in broken else "healthy")
json.dump(state, open(state_path, "w"))
'''


@pytest.fixture
def fake(tmp_path):
    """Project dir, env and helpers for one deploy run against the fake docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.replace("PYTHON", sys.executable))
    docker.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text("services: {}\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DOCKER_STATE": str(tmp_path / "state.json"),
        "FAKE_DOCKER_LOG": str(tmp_path / "calls.log"),
    }

    class Fake:
        def __init__(self):
            self.project, self.env = project, env

        def running(self, image: str, variable: str = "SERVICE_IMAGE", others: str = "") -> None:
            (project / "images.env").write_text(f"{others}{variable}={image}\n")
            (tmp_path / "state.json").write_text(json.dumps({"image": image, "n": 1}))

        def image(self) -> str | None:
            return json.loads((tmp_path / "state.json").read_text())["image"]

        def calls(self) -> list[list[str]]:
            path = tmp_path / "calls.log"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        def ups(self) -> int:
            return sum(1 for call in self.calls() if call[0] == "compose" and "up" in call)

        def deploy(self, *extra: str, broken: str = "", missing: str = "", service: str = "service",
                   image: str = NEW) -> subprocess.CompletedProcess:
            argv = [
                sys.executable,
                str(DEPLOY),
                "--project-dir",
                str(project),
                "--service",
                service,
                "--image",
                image,
                "--timeout",
                "0.5",
                "--interval",
                "0.05",
                *extra,
            ]
            run_env = {**env, "FAKE_DOCKER_BROKEN": broken, "FAKE_DOCKER_MISSING": missing}
            return subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=60)

    return Fake()


def test_a_healthy_image_is_deployed_and_recorded(fake):
    fake.running(OLD)
    done = fake.deploy()
    assert done.returncode == 0, done.stderr
    assert fake.image() == NEW
    assert (fake.project / "images.env").read_text() == f"SERVICE_IMAGE={NEW}\n"
    assert ["pull", NEW] in fake.calls()
    up = next(call for call in fake.calls() if "up" in call)
    assert up[-5:] == ["up", "-d", "--no-deps", "--force-recreate", "service"]
    assert fake.ups() == 1


def test_an_image_that_never_gets_healthy_is_rolled_back(fake):
    fake.running(OLD)
    done = fake.deploy(broken=NEW)
    assert done.returncode == 1
    assert f"rolling back to {OLD}" in done.stdout
    assert fake.image() == OLD
    assert (fake.project / "images.env").read_text() == f"SERVICE_IMAGE={OLD}\n"
    assert fake.ups() == 2


TRAINER_OLD = "registry.example.com/team/movie-recommender/trainer:0.2.0"
TRAINER_NEW = "registry.example.com/team/movie-recommender/trainer:0.3.0"


def test_the_trainer_is_deployed_beside_the_service_on_its_health_check(fake):
    """The trainer's image goes to TRAINER_IMAGE (compose's variable); the service's line is kept."""
    fake.running(TRAINER_OLD, "TRAINER_IMAGE", others=f"SERVICE_IMAGE={OLD}\n")
    done = fake.deploy(service="trainer", image=TRAINER_NEW)
    assert done.returncode == 0, done.stderr
    assert fake.image() == TRAINER_NEW
    assert (fake.project / "images.env").read_text() == f"SERVICE_IMAGE={OLD}\nTRAINER_IMAGE={TRAINER_NEW}\n"
    up = next(call for call in fake.calls() if "up" in call)
    assert up[-5:] == ["up", "-d", "--no-deps", "--force-recreate", "trainer"]
    assert any(call[0] == "inspect" and "Health" in call[2] for call in fake.calls())


def test_a_trainer_that_never_gets_healthy_is_rolled_back(fake):
    fake.running(TRAINER_OLD, "TRAINER_IMAGE", others=f"SERVICE_IMAGE={OLD}\n")
    done = fake.deploy(service="trainer", image=TRAINER_NEW, broken=TRAINER_NEW)
    assert done.returncode == 1
    assert f"trainer: {TRAINER_NEW} did not come ready" in done.stdout
    assert fake.image() == TRAINER_OLD
    assert (fake.project / "images.env").read_text() == f"SERVICE_IMAGE={OLD}\nTRAINER_IMAGE={TRAINER_OLD}\n"
    assert fake.ups() == 2


def test_compose_names_every_deployed_image_by_the_variable_deploy_writes():
    """deploy.py writes <SERVICE>_IMAGE; each released service's compose image reads that variable."""
    deploy = _module()
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for service in ("service", "parser", "trainer"):
        assert services[service]["image"].startswith("${" + deploy.image_variable(service) + ":-"), service


def test_ready_url_decides_readiness(fake):
    """With --ready-url the deploy polls /ready; here it answers 200 only for the old image."""
    state = fake

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if state.image() == OLD else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    with http_server(Handler) as url:
        fake.running(OLD)
        done = fake.deploy("--ready-url", f"{url}/ready")
    assert done.returncode == 1
    assert fake.image() == OLD
    health_checks = [call for call in fake.calls() if call[0] == "inspect" and "Health" in call[2]]
    assert health_checks == []


def test_no_previous_image_means_no_rollback(fake):
    done = fake.deploy(broken=NEW)
    assert done.returncode == 2
    assert "no previous image to roll back to" in done.stdout
    assert fake.ups() == 1


def test_a_failed_rollback_is_reported(fake):
    fake.running(OLD)
    done = fake.deploy(broken=f"{NEW},{OLD}")
    assert done.returncode == 2
    assert "did not come ready either" in done.stdout


def test_a_failed_pull_changes_nothing(fake):
    fake.running(OLD)
    done = fake.deploy(missing=NEW)
    assert done.returncode == 3
    assert done.stderr.strip().startswith("deploy failed: docker pull")
    assert "manifest unknown" in done.stderr
    assert fake.ups() == 0
    assert (fake.project / "images.env").read_text() == f"SERVICE_IMAGE={OLD}\n"


def _module():
    spec = importlib.util.spec_from_file_location("deploy_script", DEPLOY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_env_file_helpers():
    deploy = _module()
    assert deploy.image_variable("service") == "SERVICE_IMAGE"
    assert deploy.image_variable("my-parser") == "MY_PARSER_IMAGE"
    values = {"SERVICE_IMAGE": NEW, "PARSER_IMAGE": "p:1"}
    assert deploy.parse_env("# comment\n\n" + deploy.render_env(values)) == values
