"""core.settings: typed fields from the environment, one-sentence errors naming the variable, docs read back."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from core.settings import EnvSettings, SettingsError, env, markdown_table, variables


@dataclass(frozen=True)
class Inner(EnvSettings):
    weight: float = env("X_WEIGHT", 0.5, minimum=0, maximum=1)
    """A weight in [0, 1]."""


@dataclass(frozen=True)
class Example(EnvSettings):
    count: int = env("X_COUNT", 3, minimum=1)
    """How many."""
    host: str | None = env("X_HOST", None)
    """Optional host."""
    verbose: bool = env("X_VERBOSE", True)
    """Chatty or not."""
    weights: tuple[float, float, float] = env("X_WEIGHTS", (1.0, 2.0, 3.0))
    """Three numbers."""
    mode: str = env("X_MODE", "fast", choices=("fast", "slow"))
    """fast or slow."""
    upper: str = env("X_UPPER", "A", parse=str.upper, form="letters")
    """Upper-cased."""
    snapshot: str = env("X_SNAPSHOT", "data/s.json", blank=True)
    """'' turns it off."""
    inner: Inner = field(default_factory=Inner)
    undocumented: int = env("X_UNDOC", 0)


def test_unset_and_blank_variables_keep_the_defaults():
    assert Example.from_env({}) == Example()
    assert Example.from_env({"X_COUNT": "  ", "X_HOST": ""}) == Example()


def test_each_annotation_decides_the_parsing():
    got = Example.from_env({"X_COUNT": " 7 ", "X_HOST": "db", "X_VERBOSE": "Off", "X_WEIGHTS": "1, 0.5,-2",
                            "X_MODE": "SLOW", "X_UPPER": "ab", "X_WEIGHT": "0.25"})
    assert got == Example(count=7, host="db", verbose=False, weights=(1.0, 0.5, -2.0), mode="slow", upper="AB",
                          inner=Inner(0.25))


def test_a_blank_allowed_variable_set_to_nothing_means_nothing():
    assert Example.from_env({"X_SNAPSHOT": ""}).snapshot == ""
    assert Example.from_env({}).snapshot == "data/s.json"


def test_keyword_arguments_win_over_the_environment():
    assert Example.from_env({"X_COUNT": "7"}, count=9).count == 9


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("X_COUNT", "many", "X_COUNT='many' is not valid: expected an integer >= 1."),
    ("X_COUNT", "0", "X_COUNT='0' is not valid: expected an integer >= 1."),
    ("X_COUNT", "2.5", "X_COUNT='2.5' is not valid: expected an integer >= 1."),
    ("X_VERBOSE", "maybe", "X_VERBOSE='maybe' is not valid: expected a boolean (1/true/yes/on or 0/false/no/off)."),
    ("X_WEIGHTS", "1,2", "X_WEIGHTS='1,2' is not valid: expected 3 comma-separated numbers."),
    ("X_MODE", "medium", "X_MODE='medium' is not valid: expected one of fast, slow."),
    ("X_WEIGHT", "1.5", "X_WEIGHT='1.5' is not valid: expected a number >= 0 and <= 1."),
    ("X_WEIGHT", "nan", "X_WEIGHT='nan' is not valid: expected a number >= 0 and <= 1."),
])
def test_a_bad_value_is_one_sentence_naming_the_variable_and_the_form(name, raw, message):
    with pytest.raises(SettingsError) as err:
        Example.from_env({name: raw})
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


def test_a_failing_parse_names_its_form():
    def strict(raw: str) -> str:
        raise ValueError("no")

    @dataclass(frozen=True)
    class Custom(EnvSettings):
        thing: str = env("X_THING", "a", parse=strict, form="a thing")

    with pytest.raises(SettingsError, match=r"^X_THING='b' is not valid: expected a thing\.$"):
        Custom.from_env({"X_THING": "b"})


def test_variables_read_back_the_field_docstrings_nested_included():
    found = {v.var: v for v in variables(Example)}
    assert list(found) == ["X_COUNT", "X_HOST", "X_VERBOSE", "X_WEIGHTS", "X_MODE", "X_UPPER", "X_SNAPSHOT", "X_WEIGHT",
                           "X_UNDOC"]
    assert found["X_COUNT"].doc == "How many." and found["X_COUNT"].default == 3
    assert found["X_WEIGHT"].doc == "A weight in [0, 1]."
    assert found["X_UNDOC"].doc == ""
    assert "| X_MODE | fast or slow. | one of fast, slow | `fast` |" in markdown_table(Example)


def _settings_classes():
    from data_parsing.config import ParserSettings
    from db_utils.config import DbSettings
    from embeddings.collab_job import CollabEnv
    from embeddings.config import EmbeddingSettings
    from evaluation.settings import NotebookSettings
    from inference.config import RankConfig, ServiceSettings
    from training.config import TrainingSettings

    return [DbSettings, EmbeddingSettings, CollabEnv, NotebookSettings, RankConfig, ServiceSettings, TrainingSettings,
            ParserSettings]


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_every_variable_of_the_project_is_documented_once(cls):
    """Each variable has its field's docstring, and no two fields of one class read the same variable."""
    found = variables(cls)
    assert [v.var for v in found if not v.doc] == []
    assert len({v.var for v in found}) == len(found)
