"""Schemathesis against /openapi.json: generated requests (valid and invalid) never get a 5xx, and every
answer matches the documented status codes, content types and schemas. Runs in-process (WSGI) on the
real SQLite store and embedded ChromaDB; bounded examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings

from inference.app import create_app
from inference.config import ServiceSettings
from inference.openapi import spec
from tests.fixtures.inference_store import build_demo, vectors_at

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    demo = build_demo(str(tmp_path_factory.mktemp("schema")))
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": demo.database_url,
            "VECTORS_FACTORY": vectors_at(demo.chroma_path),
            "SETTINGS": ServiceSettings(popular_snapshot="", access_log=False),
        }
    )
    assert app.test_client().get("/openapi.json").get_json() == spec()  # the document tested is served
    return app


schema = schemathesis.openapi.from_dict(spec())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_openapi_description(case, real_app: Flask) -> None:
    case.call_and_validate(app=real_app)
