"""Settings from the environment: one typed helper for every role.

A settings class is a frozen dataclass whose fields say where they come from::

    @dataclass(frozen=True)
    class DbSettings(EnvSettings):
        url: str = env("DATABASE_URL", "sqlite:///data/recsys.db")
        \"\"\"SQLAlchemy URL of the SQL store.\"\"\"
        busy_timeout_ms: int = env("SQLITE_BUSY_TIMEOUT_MS", 30_000, minimum=0)
        \"\"\"How long SQLite waits for a writer's lock before failing.\"\"\"

    DbSettings.from_env()            # os.environ
    DbSettings.from_env({"DATABASE_URL": "postgresql+psycopg://..."})

- Each variable is documented once: the field's docstring (`variables(cls)` reads them back, for a table
  or a `--help` epilog, and a test checks none is missing).
- The field's annotation decides the parsing: `int`, `float`, `str`, `bool` (1/0, true/false, yes/no,
  on/off), `X | None` (unset or blank gives the default), a fixed-length `tuple[float, ...]` written as
  comma-separated numbers; `choices` restricts a string (case-insensitive), `parse` takes over for
  anything else. A field without `env(...)` whose type is an `EnvSettings` class is read from the same
  environment (nested settings).
- A bad value is a startup error, `SettingsError` (a ValueError), one sentence naming the variable, the
  value and the accepted form: nothing is clamped silently, nothing falls back to a default.
- Unset or blank variables keep the field's default (`blank=True`: a variable set to '' means ''); keyword
  arguments to `from_env` override both.

Adopting it in a settings class: derive from `EnvSettings`, replace each `os.environ.get`/`int()` by a
field `name: T = env("VAR", default, minimum=...)` with its docstring under it, delete the hand-written
`from_env`; callers keep calling `Cls.from_env(env)`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import os
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar

T = TypeVar("T")
_KEY = "core.settings"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A variable's value is not of the accepted form (the message names both)."""


@dataclass(frozen=True)
class EnvSpec:
    """Where a field comes from and what it accepts (kept in the dataclass field's metadata)."""

    var: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None
    form: str | None = None
    blank: bool = False


def env(var: str, default: Any = dataclasses.MISSING, *, default_factory: Callable[[], Any] | None = None,
        minimum: float | None = None, maximum: float | None = None, choices: tuple[str, ...] | None = None,
        parse: Callable[[str], Any] | None = None, form: str | None = None, blank: bool = False) -> Any:
    """A dataclass field read from the environment variable `var` (see the module docstring).

    `minimum`/`maximum` bound a number (inclusive); `choices` lists the accepted strings; `parse` turns the
    raw text into the value (a ValueError from it becomes a SettingsError) and `form` describes what it
    accepts, for the error message. `blank=True` makes a variable set to '' mean '' (a string setting that
    '' turns off, such as a snapshot path) instead of "unset, keep the default".
    """
    spec = EnvSpec(var, minimum, maximum, choices, parse, form, blank)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={_KEY: spec})
    return dataclasses.field(default=default, metadata={_KEY: spec})


def _unwrap_optional(kind: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _bounds(spec: EnvSpec) -> str:
    parts = []
    if spec.minimum is not None:
        parts.append(f">= {spec.minimum:g}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum:g}")
    return (" " + " and ".join(parts)) if parts else ""


def accepted_form(spec: EnvSpec, kind: Any) -> str:
    """What a variable accepts, in words: "an integer >= 1", "one of onnx, torch"..."""
    kind = _unwrap_optional(kind)
    if spec.form:
        return spec.form
    if spec.choices:
        return "one of " + ", ".join(spec.choices)
    if kind is bool:
        return "a boolean (" + "/".join(TRUE) + " or " + "/".join(FALSE) + ")"
    if kind is int:
        return "an integer" + _bounds(spec)
    if kind is float:
        return "a number" + _bounds(spec)
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        count = "comma-separated numbers" if args[-1:] == (Ellipsis,) else f"{len(args)} comma-separated numbers"
        return count + _bounds(spec)
    return "a non-blank string"


def parse_value(spec: EnvSpec, kind: Any, raw: str) -> Any:
    """The value of one variable's (stripped, non-blank) text, or a SettingsError naming the variable."""
    base = _unwrap_optional(kind)

    def bad() -> SettingsError:
        return SettingsError(f"{spec.var}={raw!r} is not valid: expected {accepted_form(spec, kind)}.")

    value: Any
    try:
        if spec.parse is not None:
            value = spec.parse(raw)
        elif spec.choices:
            value = raw.lower()
            if value not in spec.choices:
                raise bad()
        elif base is bool:
            if raw.lower() not in TRUE + FALSE:
                raise bad()
            value = raw.lower() in TRUE
        elif base is int:
            value = int(raw)
        elif base is float:
            value = float(raw)
            if value != value:  # NaN passes every bound check: refuse it here
                raise bad()
        elif typing.get_origin(base) is tuple:
            args = typing.get_args(base)
            value = tuple(float(part) for part in raw.split(","))
            if args[-1:] != (Ellipsis,) and len(value) != len(args):
                raise bad()
        else:
            value = raw
    except (ValueError, TypeError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise bad() from None
    numbers = value if isinstance(value, tuple) else (value,)
    for number in numbers:
        if isinstance(number, int | float) and not isinstance(number, bool) and (
                (spec.minimum is not None and number < spec.minimum)
                or (spec.maximum is not None and number > spec.maximum)):
            raise bad()
    return value


def from_env(cls: type[T], environ: Mapping[str, str] | None = None, **given: Any) -> T:
    """An instance of the settings dataclass `cls` from `environ` (default: os.environ); `given` fields win."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in given or not f.init:
            continue
        spec: EnvSpec | None = f.metadata.get(_KEY)
        kind = hints[f.name]
        if spec is None:
            if isinstance(kind, type) and issubclass(kind, EnvSettings):
                values[f.name] = from_env(kind, environ)
            continue
        given_raw = environ.get(spec.var)
        raw = (given_raw or "").strip()
        if raw:
            values[f.name] = parse_value(spec, kind, raw)
        elif spec.blank and given_raw is not None:
            values[f.name] = ""
    return cls(**values, **given)


class EnvSettings:
    """Base of a settings dataclass: gives it `from_env` (see the module docstring)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> Self:
        """Read the settings from `environ` (default: os.environ); unset variables keep the defaults."""
        return from_env(cls, environ, **given)


@dataclass(frozen=True)
class Variable:
    """One documented environment variable of a settings class."""

    var: str
    field: str
    default: Any
    accepted: str
    doc: str


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of `cls` (its own and its bases'), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def variables(cls: type) -> list[Variable]:
    """Every environment variable `cls` reads (nested settings included), with its default, accepted form
    and the field's docstring ('' when the field has none)."""
    hints, docs, out = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        spec: EnvSpec | None = f.metadata.get(_KEY)
        kind = hints[f.name]
        if spec is None:
            if isinstance(kind, type) and issubclass(kind, EnvSettings):
                out.extend(variables(kind))
            continue
        default = f.default if f.default is not dataclasses.MISSING else "(computed)"
        out.append(Variable(spec.var, f.name, default, accepted_form(spec, kind), docs.get(f.name, "")))
    return out


def markdown_table(cls: type) -> str:
    """`| variable | meaning | accepted | default |` rows for the docs, from `variables(cls)`."""
    rows = ["| variable | meaning | accepted | default |", "|---|---|---|---|"]
    for v in variables(cls):
        default = "unset" if v.default is None else f"`{v.default}`"
        rows.append(f"| {v.var} | {' '.join(v.doc.split())} | {v.accepted} | {default} |")
    return "\n".join(rows)
