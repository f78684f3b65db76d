"""EmbeddingSettings.from_env: documented defaults, overrides, and one-sentence errors."""

import os

import pytest

from embeddings.config import EmbeddingSettings, default_model_path


def test_defaults_need_no_environment():
    settings = EmbeddingSettings.from_env({})
    assert settings.chroma_path == "data/chroma"
    assert settings.chroma_host is None
    assert settings.collection == "movies"
    assert settings.model_path == default_model_path()
    assert os.path.isfile(os.path.join(settings.model_path, "config.json"))
    assert settings.movie_api_url is None


def test_environment_overrides():
    settings = EmbeddingSettings.from_env({
        "CHROMA_PATH": "/tmp/c", "CHROMA_HOST": "10.0.0.5", "CHROMA_PORT": "8100", "MODEL_PATH": "/m",
        "EMBED_BATCH_SIZE": "50", "MOVIE_API_URL": "http://api:8080/", "MOVIE_API_RETRIES": "0",
        "MOVIE_API_TIMEOUT": "0.5",
    })
    assert (settings.chroma_path, settings.chroma_host, settings.chroma_port) == ("/tmp/c", "10.0.0.5", 8100)
    assert (settings.model_path, settings.batch_size) == ("/m", 50)
    assert settings.movie_api_url == "http://api:8080"
    assert (settings.api_retries, settings.api_timeout) == (0, 0.5)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CHROMA_PORT", "eighty", "CHROMA_PORT='eighty' is not valid: expected an integer >= 1 and <= 65535."),
    ("EMBED_BATCH_SIZE", "0", "EMBED_BATCH_SIZE='0' is not valid: expected an integer >= 1."),
    ("MOVIE_API_RETRIES", "-1", "MOVIE_API_RETRIES='-1' is not valid: expected an integer >= 0."),
    ("MOVIE_API_TIMEOUT", "nan", "MOVIE_API_TIMEOUT='nan' is not valid: expected a number >= 0.001."),
])
def test_bad_values_give_one_clear_sentence(name, value, message):
    with pytest.raises(ValueError) as err:
        EmbeddingSettings.from_env({name: value})
    assert str(err.value) == message


def test_encoder_backend_defaults_to_onnx_and_accepts_torch():
    assert EmbeddingSettings.from_env({}).encoder_backend == "onnx"
    assert EmbeddingSettings.from_env({}).onnx_dir == "data/models"
    settings = EmbeddingSettings.from_env({"EMBED_BACKEND": " Torch ", "EMBED_ONNX_DIR": "/var/cache/onnx"})
    assert (settings.encoder_backend, settings.onnx_dir) == ("torch", "/var/cache/onnx")


def test_unknown_encoder_backend_is_one_sentence():
    with pytest.raises(ValueError) as err:
        EmbeddingSettings.from_env({"EMBED_BACKEND": "tensorrt"})
    assert str(err.value) == "EMBED_BACKEND='tensorrt' is not valid: expected one of onnx, torch."


def test_collab_collection_is_a_setting_and_collab_settings_points_at_it():
    from embeddings.collab_job import collab_settings

    assert EmbeddingSettings.from_env({}).collab_collection == "movies_cf"
    settings = EmbeddingSettings.from_env({"CHROMA_COLLAB_COLLECTION": "cf_v2", "CHROMA_PATH": "/tmp/c"})
    pointed = collab_settings(settings)
    assert (pointed.collection, pointed.chroma_path) == ("cf_v2", "/tmp/c")


def test_collab_variables_parse_into_the_collab_config():
    from embeddings.collab_job import collab_config_from_env
    from embeddings.collaborative import CollabConfig

    assert collab_config_from_env({}) == CollabConfig()
    config = collab_config_from_env({"COLLAB_DIM": "32", "COLLAB_SEED": "7", "COLLAB_MIN_VIEWERS": "3"})
    assert (config.dim, config.seed, config.min_viewers) == (32, 7, 3)
    with pytest.raises(ValueError, match=r"^COLLAB_DIM='0' is not valid: expected an integer >= 1\.$"):
        collab_config_from_env({"COLLAB_DIM": "0"})
