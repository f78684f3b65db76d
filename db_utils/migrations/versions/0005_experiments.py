"""experiments: online experiments and canaries between model versions, at most one running

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("control_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("arms", sa.Text(), nullable=False),
        sa.Column("is_canary", sa.Boolean(), nullable=False),
        sa.Column("min_users", sa.Integer(), nullable=True),
        sa.Column("max_days", sa.Float(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'stopped')", name="ck_experiments_status"),
    )
    op.create_index("uq_experiments_one_running", "experiments", ["status"], unique=True,
                    sqlite_where=RUNNING, postgresql_where=RUNNING, mssql_where=RUNNING)


def downgrade() -> None:
    op.drop_index("uq_experiments_one_running", table_name="experiments")
    op.drop_table("experiments")
