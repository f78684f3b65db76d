"""The GitLab pipeline: schema-valid, and gitlab-ci-local lists the right jobs for each kind of pipeline."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.fixtures.prometheus import REPO
from tests.fixtures.services import require_binary
from tests.fixtures.tools import gitlab_ci_local, run, venv_tool

CI_FILE = REPO / ".gitlab-ci.yml"
TESTS = ["test", "offline-evaluation"]

# (pipeline, gitlab-ci-local arguments, jobs expected). GitLab sets no CI_COMMIT_BRANCH in tag and
# merge-request pipelines, so those scenarios unset it.
SCENARIOS = [
    ("push to main", [], TESTS),
    (
        "merge request",
        [
            "--variable",
            "CI_PIPELINE_SOURCE=merge_request_event",
            "--variable",
            "CI_MERGE_REQUEST_IID=7",
            "--unset-variable",
            "CI_COMMIT_BRANCH",
        ],
        TESTS,
    ),
    (
        "branch push with an open merge request",
        ["--variable", "CI_OPEN_MERGE_REQUESTS=team/movie-recommender!7"],
        [],
    ),
    (
        "recommender release tag",
        ["--variable", "CI_COMMIT_TAG=release-recommender-1.4.0", "--unset-variable", "CI_COMMIT_BRANCH"],
        [*TESTS, "build-recommender", "deploy-recommender"],
    ),
    (
        "parser release tag",
        ["--variable", "CI_COMMIT_TAG=release-parser-2.0.1", "--unset-variable", "CI_COMMIT_BRANCH"],
        [*TESTS, "build-parser", "deploy-parser"],
    ),
    (
        "trainer release tag",
        ["--variable", "CI_COMMIT_TAG=release-trainer-0.3.0", "--unset-variable", "CI_COMMIT_BRANCH"],
        [*TESTS, "build-trainer", "deploy-trainer"],
    ),
    ("other tag", ["--variable", "CI_COMMIT_TAG=v1.0", "--unset-variable", "CI_COMMIT_BRANCH"], []),
]


def test_pipeline_matches_the_gitlab_ci_schema():
    done = run([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(CI_FILE)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_rejects_a_bad_pipeline(tmp_path):
    pipeline = yaml.safe_load(CI_FILE.read_text())
    pipeline["test"]["artifacts"]["reports"]["coverage_report"]["coverage_format"] = "lcov-ish"
    (tmp_path / ".gitlab-ci.yml").write_text(yaml.safe_dump(pipeline))
    done = run(
        [
            venv_tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(tmp_path / ".gitlab-ci.yml"),
        ]
    )
    assert done.returncode != 0


@pytest.fixture(scope="module")
def ci_repo(tmp_path_factory):
    """A throw-away git repository holding the pipeline (gitlab-ci-local reads git metadata)."""
    require_binary("git")
    repo = tmp_path_factory.mktemp("ci-repo")
    shutil.copy(CI_FILE, repo / ".gitlab-ci.yml")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "remote", "add", "origin", "git@gitlab.example.com:team/movie-recommender.git"],
        ["git", "add", "."],
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-q", "-m", "pipeline"],
    ):
        subprocess.run(argv, cwd=repo, check=True, capture_output=True)
    return repo


def listed_jobs(ci_repo, args: list[str]) -> list[str]:
    done = run([gitlab_ci_local(), "--list-csv", *args], cwd=ci_repo)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("name;"), done.stdout
    return [line.split(";")[0] for line in lines[1:]]


@pytest.mark.slow
@pytest.mark.parametrize(("pipeline", "args", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_gitlab_ci_local_lists_the_right_jobs(ci_repo, pipeline, args, expected):
    assert listed_jobs(ci_repo, args) == expected


@pytest.mark.slow
def test_release_jobs_build_push_and_deploy_with_rollback(ci_repo):
    done = run([gitlab_ci_local(), "--preview"], cwd=ci_repo)
    assert done.returncode == 0, done.stderr
    jobs = yaml.safe_load(done.stdout)
    for component, service in (("recommender", "service"), ("parser", "parser"), ("trainer", "trainer")):
        build, deploy = jobs[f"build-{component}"], jobs[f"deploy-{component}"]
        script = "\n".join(build["script"])
        assert '-t "$image:$VERSION" -t "$image:$CI_COMMIT_SHORT_SHA"' in script
        assert (
            'docker push "$image:$CI_COMMIT_SHORT_SHA"' in script and "$CI_REGISTRY_IMAGE/$target" in script
        )
        assert build["variables"]["TAG_PREFIX"] == f"release-{component}-"
        assert deploy["tags"] == ["vm"]
        assert [need["job"] for need in deploy["needs"]] == [f"build-{component}"]
        assert deploy["variables"]["SERVICE"] == service
        assert any("deploy/deploy.py" in line for line in deploy["script"])
    assert jobs["deploy-recommender"]["variables"]["READY_URL"].endswith(":8082/ready")
    # the trainer publishes no port on the VM: its container health check (/metrics on 9104) decides
    assert jobs["deploy-trainer"]["variables"]["READY_URL"] == ""
    assert jobs["build-trainer"]["variables"]["TARGETS"] == "trainer"
    test = jobs["test"]
    assert test["artifacts"]["reports"]["junit"] == "junit.xml"
    assert test["artifacts"]["reports"]["coverage_report"] == {
        "coverage_format": "cobertura",
        "path": "coverage.xml",
    }
    assert jobs["offline-evaluation"]["artifacts"]["paths"] == ["report.json", "leave-last-out.json", "training.json"]
    script = " ".join(jobs["offline-evaluation"]["script"])
    # the gate's figures of the version `training run` promoted: the same path as `make run`
    assert script.index("python -m training run") < script.index("python -m evaluation offline --out report.json")
