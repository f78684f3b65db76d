"""model_fingerprint: the same model files give the same fingerprint anywhere; any deciding file changes it."""

import shutil

import pytest

from embeddings.fingerprint import model_fingerprint


@pytest.fixture
def model_dir(tmp_path):
    root = tmp_path / "all-MiniLM-L6-v2"
    (root / "1_Pooling").mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 384}')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (root / "vocab.txt").write_text("[PAD]\n[UNK]\nmovie\n")
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return root


def test_same_files_elsewhere_give_the_same_fingerprint(model_dir, tmp_path):
    fingerprint = model_fingerprint(str(model_dir))
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 16
    moved = shutil.copytree(model_dir, tmp_path / "elsewhere" / "another-name")
    assert model_fingerprint(str(moved)) == fingerprint


def test_readme_and_caches_do_not_count(model_dir):
    before = model_fingerprint(str(model_dir))
    (model_dir / "README.md").write_text("# a model card")
    (model_dir / ".gitattributes").write_text("*.safetensors filter=lfs")
    (model_dir / "graph.onnx").write_bytes(b"\x00" * 100)
    assert model_fingerprint(str(model_dir)) == before


@pytest.mark.parametrize("path, content", [
    ("model.safetensors", b"other weights"),
    ("1_Pooling/config.json", b'{"pooling_mode_cls_token": true}'),
    ("vocab.txt", b"[PAD]\n[UNK]\nfilm\n"),
    ("2_Normalize/config.json", b"{}"),
])
def test_any_deciding_file_changes_the_fingerprint(model_dir, path, content):
    before = model_fingerprint(str(model_dir))
    target = model_dir / path
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(content)
    assert model_fingerprint(str(model_dir)) != before


def test_a_file_renamed_changes_the_fingerprint(model_dir):
    before = model_fingerprint(str(model_dir))
    (model_dir / "vocab.txt").rename(model_dir / "vocabulary.txt")
    assert model_fingerprint(str(model_dir)) != before


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_fingerprint(str(tmp_path / "nowhere"))
