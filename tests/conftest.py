"""Fixtures shared by the whole suite. Service fixtures live in tests/fixtures/, one module a service."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# An app built with default settings writes its provenance lines here, not into the checkout's data/.
os.environ.setdefault("PROVENANCE_LOG", os.path.join(tempfile.mkdtemp(prefix="provenance-"), "provenance.log"))
from tests.fixtures.chroma import chroma_server  # noqa: F401
from tests.fixtures.embedding_model import encoder  # noqa: F401
from tests.fixtures.kafka import kafka_bootstrap  # noqa: F401
from tests.fixtures.monitored import monitored_targets  # noqa: F401
from tests.fixtures.movie_api import movie_api, movie_api_session  # noqa: F401
from tests.fixtures.notebook import venv_kernel  # noqa: F401
from tests.fixtures.postgres import postgres_url  # noqa: F401
from tests.fixtures.stores import store_engine  # noqa: F401
