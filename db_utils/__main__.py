"""`python -m db_utils migrate`: bring the SQL store at DATABASE_URL to the latest schema."""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m db_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="upgrade the schema to the latest revision")
    mig.add_argument("--url", help="SQLAlchemy URL (default: DATABASE_URL or sqlite:///data/recsys.db)")
    mig.add_argument("--revision", default="head")
    cur = sub.add_parser("current", help="print the schema revision")
    cur.add_argument("--url")
    args = parser.parse_args(argv)

    from core.logs import setup as setup_logs
    from db_utils import migrate
    from db_utils.config import DbSettings

    setup_logs(logging.INFO)  # Alembic's "Running upgrade ..." lines, as JSON lines on stderr
    try:
        url = args.url or DbSettings.from_env().url
    except ValueError as exc:  # a malformed variable: its one sentence
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "migrate":
            migrate.upgrade(url, args.revision)
            print(f"database at {_redact(url)} is at revision {args.revision}")
        else:
            migrate.current(url)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: cannot migrate the database at {_redact(url)}: {reason}", file=sys.stderr)
        return 1
    return 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
