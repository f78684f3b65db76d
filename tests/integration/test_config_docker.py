"""The Dockerfile and docker-compose.yml, checked by hadolint and the compose JSON schema.

No Docker engine runs on these machines: images and the stack are validated here, built and run by CI
on the team's runners (docs/operations.md).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.services import require_binary
from tests.fixtures.tools import run, venv_tool

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "docker").glob("*Dockerfile"))
COMPOSE = REPO / "docker-compose.yml"


def stages(dockerfile: Path) -> dict[str, list[str]]:
    """Instructions of each build stage, by stage name (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    result: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if match := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE):
            current = match[2] or match[1]
            result[current] = [line]
        elif current:
            result[current].append(line)
    return result


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    done = run([venv_tool("hadolint"), "--no-color", str(dockerfile)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    done = run([venv_tool("hadolint"), "--no-color", str(bad)])
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # :latest
    assert "DL3013" in done.stdout  # unpinned pip install


def test_every_role_has_a_target_running_as_non_root_with_a_health_check():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile"]
    built = stages(DOCKERFILES[0])
    assert {"deps", "runtime", "service", "parser", "embeddings", "trainer"} <= set(built)
    assert any(line.startswith("USER 10001") for line in built["runtime"])
    assert not any(
        line.startswith("USER") for name in ("service", "parser", "embeddings", "trainer") for line in built[name]
    )
    assert any("/health" in line for line in built["service"] if line.startswith("HEALTHCHECK"))
    assert any("9102" in line for line in built["parser"] if line.startswith("HEALTHCHECK"))
    assert "HEALTHCHECK NONE" in built["embeddings"]  # a one-shot job; compose waits for its exit
    assert any("gunicorn" in line and "inference.wsgi:app" in line for line in built["service"])
    # the embedding job's ONNX graph is exported at build time and copied in, where EMBED_ONNX_DIR points
    assert any(line.startswith("RUN python -m embeddings onnx") for line in built["onnx-graph"])
    assert "ENV EMBED_ONNX_DIR=/opt/onnx" in built["embeddings"]
    assert "COPY --from=onnx-graph /tmp/onnx /opt/onnx" in built["embeddings"]


def test_trainer_target_runs_the_schedule_with_the_baked_graph_and_its_metrics_port():
    built = stages(DOCKERFILES[0])
    trainer, runtime = built["trainer"], built["runtime"]
    assert trainer[0] == "FROM runtime AS trainer"
    assert "COPY --from=onnx-graph /tmp/onnx /opt/onnx" in trainer
    env = " ".join(line for line in trainer if line.startswith("ENV"))
    assert "EMBED_ONNX_DIR=/opt/onnx" in env and "TRAIN_METRICS_PORT=9104" in env
    assert "EXPOSE 9104" in trainer
    assert any("9104" in line and "/metrics" in line for line in trainer if line.startswith("HEALTHCHECK"))
    cmd = next(line for line in trainer if line.startswith("CMD"))
    assert "exec python -m training run --every" in cmd and "${TRAIN_EVERY:-6h}" in cmd
    # the code the trainer imports is in the shared runtime layer
    for package in ("training", "core", "embeddings", "evaluation", "inference", "db_utils"):
        assert any(line.startswith("COPY") and f"./{package}" in line for line in runtime), package


def test_cpu_torch_and_dependencies_come_before_code():
    deps = stages(DOCKERFILES[0])["deps"]
    torch = next(i for i, line in enumerate(deps) if "torch==2.13.0" in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in deps[torch]
    assert not any(line.startswith("COPY") and "db_utils" in line for line in deps), (
        "no code in the deps stage"
    )
    runtime = stages(DOCKERFILES[0])["runtime"]
    copies = [i for i, line in enumerate(runtime) if line.startswith("COPY")]
    assert "--from=deps" in runtime[copies[0]], "the dependency layer is copied before any code"
    assert any("HF_HUB_OFFLINE=1" in line for line in runtime)


def test_compose_file_matches_the_compose_specification():
    done = run([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_check_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "docker-compose.yml"
    stack = compose()
    stack["services"]["service"]["depends_on"]["trainer"]["condition"] = "service_finished"
    bad.write_text(yaml.safe_dump(stack))
    done = run([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert done.returncode != 0


def test_stack_has_every_part_and_a_health_based_start_order():
    services = compose()["services"]
    assert {
        "postgres",
        "chroma",
        "service",
        "parser",
        "trainer",
        "embeddings",
        "prometheus",
        "alertmanager",
        "grafana",
        "cadvisor",
    } <= set(services)
    service = services["service"]
    assert service["command"] == ["gunicorn", "-c", "inference/gunicorn.conf.py", "inference.wsgi:app"]
    assert "ports" not in service and services["nginx"]["ports"] == ["8082:8082"]  # nginx publishes 8082
    # the service waits for the schema, and only softly for the trainer (it serves content vectors until
    # the first cycle promotes a version)
    assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert service["depends_on"]["trainer"] == {"condition": "service_healthy", "required": False}
    assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "embeddings" not in service["depends_on"]
    trainer = services["trainer"]
    assert trainer["build"]["target"] == "trainer"
    assert trainer["image"] == "${TRAINER_IMAGE:-movie-recommender/trainer:latest}"
    assert "exec python -m training run --every" in trainer["command"][-1]
    assert trainer["environment"]["TRAIN_EVERY"] == "${TRAIN_EVERY:-6h}"
    assert trainer["environment"]["TRAIN_METRICS_PORT"] == "9104"
    assert trainer["restart"] == "unless-stopped"
    assert "9104/metrics" in " ".join(trainer["healthcheck"]["test"])
    assert trainer["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert {"postgres", "chroma"} <= set(trainer["depends_on"])
    # the one-shot embedding job stays for a manual re-embed, out of `docker compose up`
    assert services["embeddings"]["profiles"] == ["manual"]
    assert services["embeddings"]["restart"] == "no"
    assert services["embeddings"]["command"][:4] == ["python", "-m", "embeddings", "build"]
    parser = services["parser"]["command"]
    assert (
        parser
        == "python -m data_parsing ingest --source kafka://${KAFKA_BOOTSTRAP_SERVERS}/${KAFKA_TOPIC:-movielog}"
    )
    one_shot = {name for name, spec in services.items() if spec.get("restart") == "no"}
    for name, spec in services.items():
        if name not in one_shot:
            assert "healthcheck" in spec, f"{name} has no healthcheck"
        for dependency, how in spec.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert how["condition"] == expected, f"{name} -> {dependency}"


def test_secrets_stay_out_of_the_repository():
    stack = compose()
    gitignore = (REPO / ".gitignore").read_text().split()
    assert ".env" in gitignore and "secrets/" in gitignore
    for secret in stack["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    alertmanager = stack["services"]["alertmanager"]
    assert alertmanager["secrets"] == ["slack_webhook_url"]
    example = (REPO / ".env.example").read_text()
    assert "hooks.slack.com" not in example + COMPOSE.read_text()


def test_env_example_defines_every_variable_compose_needs_without_a_default():
    text = COMPOSE.read_text().replace("$$", "")
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))  # ${VAR} with no :-default
    defined = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert needed, "the compose file reads its settings from the environment"
    assert needed <= defined, f"missing from .env.example: {sorted(needed - defined)}"


def _fleet_module():
    spec = importlib.util.spec_from_file_location("fleet_for_compose", REPO / "scripts" / "fleet.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_runs_the_fleets_topology():
    """Two service replicas behind nginx, two parsers in one consumer group, the trainer (as fleet.py up)."""
    services = compose()["services"]
    assert services["service"]["deploy"]["replicas"] == 2
    assert services["service"]["environment"]["GUNICORN_WORKERS"] == "1"  # one switch moment per replica
    assert services["service"]["expose"] == ["8082"]
    parser = services["parser"]
    assert parser["deploy"]["replicas"] == 2
    assert parser["environment"]["KAFKA_GROUP_ID"] == "${KAFKA_GROUP_ID:-movie-recommender}"
    assert "trainer" in services and services["nginx"]["depends_on"] == {"service": {"condition": "service_healthy"}}


def test_compose_nginx_renders_the_fleets_own_template_as_the_fleet_does(tmp_path):
    """compose's nginx mounts deploy/fleet/nginx.conf.template and renders it with envsubst over the
    template's placeholders: run that very shell line here and compare with fleet.py's rendering."""
    envsubst = require_binary("envsubst", "/usr/bin/envsubst")
    fleet = _fleet_module()
    nginx = compose()["services"]["nginx"]
    template = "/etc/nginx/fleet/nginx.conf.template"
    assert nginx["volumes"] == [f"./deploy/fleet/nginx.conf.template:{template}:ro"]
    env = dict(nginx["environment"])
    assert set(env) == set(fleet.NGINX_PLACEHOLDERS)
    assert env["servers"] == fleet.server_line("service:8082")  # the fleet's server line, compose's address
    assert nginx["command"][:2] == ["sh", "-c"]
    line = nginx["command"][2].replace("$$", "$")  # compose's escape for a literal dollar
    render = line.split(" && exec nginx")[0].replace(template, str(REPO / "deploy" / "fleet" / "nginx.conf.template"))
    env["prefix"] = str(tmp_path)
    done = subprocess.run(["sh", "-c", render], env={**env, "PATH": str(Path(envsubst).parent)}, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    rendered = (tmp_path / "nginx.conf").read_text()
    assert rendered == fleet.render_template((REPO / "deploy" / "fleet" / "nginx.conf.template").read_text(), env)
    assert "listen 8082;" in rendered and "server service:8082 max_fails=1" in rendered and "$host" in rendered
    assert (tmp_path / "logs").is_dir()
    assert line.rstrip().endswith('exec nginx -p "${prefix}" -c "${prefix}/nginx.conf"')
