"""Fixtures shared by the whole suite. Service fixtures live in tests/fixtures/, one module a service."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from tests.fixtures.postgres import postgres_url  # noqa: E402, F401
from tests.fixtures.chroma import chroma_server  # noqa: E402, F401
from tests.fixtures.embedding_model import encoder  # noqa: E402, F401
from tests.fixtures.movie_api import movie_api, movie_api_session  # noqa: E402, F401
