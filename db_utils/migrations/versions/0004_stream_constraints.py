"""Stream tables refuse malformed rows: watched minutes in range, first time not after the last,
served status and latency in range

The parser validates every line; these constraints make the store itself refuse what the parser would
reject, so nothing malformed reaches the tables whichever writer it comes from (the rule that replaced
"NULL-cleaned rows removed before use"). Rejected lines stay auditable in rejected_lines.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 06:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINTS = {
    "watched": [("ck_watched_minute_range", "max_minute BETWEEN 0 AND 10000"),
                ("ck_watched_first_before_last", "first_ts <= last_ts")],
    "recommendations_served": [("ck_served_status_range", "status BETWEEN 0 AND 999"),
                               ("ck_served_latency_nonnegative", "latency_ms >= 0")],
}


def upgrade() -> None:
    for table, checks in CONSTRAINTS.items():  # neither table is referenced: SQLite's copy-and-move is safe
        with op.batch_alter_table(table, recreate="auto") as batch_op:
            for name, condition in checks:
                batch_op.create_check_constraint(name, condition)


def downgrade() -> None:
    for table, checks in CONSTRAINTS.items():
        with op.batch_alter_table(table, recreate="auto") as batch_op:
            for name, _ in checks:
                batch_op.drop_constraint(name, type_="check")
