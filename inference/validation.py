"""Input rules of the API as pure functions; each failure is one sentence for a 400 answer."""

from __future__ import annotations

import re

USER_ID = re.compile(r"[0-9]{1,10}", re.ASCII)
MOVIE_ID = re.compile(r"[a-z0-9][a-z0-9+]{0,254}", re.ASCII)
MAX_USER_ID = 10**9


class InvalidInput(ValueError):
    """Bad input from a caller; str(exc) is the one-sentence answer."""


def _shown(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_user_id(raw: object) -> int:
    """A user id: ASCII decimal digits (or a JSON integer) between 0 and 10^9."""
    if isinstance(raw, bool):
        raise InvalidInput(f"User id {_shown(raw)} is not a decimal integer between 0 and 1000000000.")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and USER_ID.fullmatch(raw):
        value = int(raw)
    else:
        raise InvalidInput(f"User id {_shown(raw)} is not a decimal integer between 0 and 1000000000.")
    if not 0 <= value <= MAX_USER_ID:
        raise InvalidInput(f"User id {_shown(raw)} is not a decimal integer between 0 and 1000000000.")
    return value


def parse_movie_id(raw: str) -> str:
    """A movie slug: lower-case ASCII letters, digits and '+', at most 255 characters."""
    if not MOVIE_ID.fullmatch(raw):
        raise InvalidInput(f"Movie id {_shown(raw)} is not a slug of lower-case letters, digits and '+'.")
    return raw


def parse_user_ids(body: object, limit: int) -> list[int]:
    """The `user_ids` list of a POST /recommend body: 1..limit valid user ids."""
    if not isinstance(body, dict) or not isinstance(body.get("user_ids"), list):
        raise InvalidInput('The request body must be a JSON object like {"user_ids": [1, 2, 3]}.')
    ids = body["user_ids"]
    if not ids:
        raise InvalidInput("The user_ids list must not be empty.")
    if len(ids) > limit:
        raise InvalidInput(f"At most {limit} user ids may be asked for at once, got {len(ids)}.")
    return [parse_user_id(raw) for raw in ids]


def parse_k(raw: str | None, default: int, limit: int = 100) -> int:
    """The `k` query parameter: an integer from 1 to limit."""
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,3}", raw, re.ASCII) or not 1 <= int(raw) <= limit:
        raise InvalidInput(f"Parameter k must be an integer from 1 to {limit}.")
    return int(raw)


def parse_format(raw: str | None) -> str:
    """The `format` query parameter: text (the default) or json."""
    if raw is None or raw == "text":
        return "text"
    if raw == "json":
        return "json"
    raise InvalidInput("Parameter format must be text or json.")
