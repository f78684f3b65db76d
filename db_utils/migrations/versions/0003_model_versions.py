"""model_versions and model_events: the training role's versions, the active one, its history

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 06:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("activated_at", sa.DateTime(), nullable=True),
        sa.Column("content_collection", sa.String(128), nullable=False),
        sa.Column("collab_collection", sa.String(128), nullable=True),
        sa.Column("rank_config", sa.Text(), nullable=False),
        sa.Column("collab_config", sa.Text(), nullable=False),
        sa.Column("watermark", sa.Text(), nullable=True),
        sa.Column("code_revision", sa.String(64), nullable=False),
        sa.Column("model_fingerprint", sa.String(80), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=True),
        sa.Column("collections_dropped", sa.Boolean(), nullable=False),
        sa.CheckConstraint("status IN ('candidate', 'active', 'retired', 'rejected', 'failed')",
                           name="ck_model_versions_status"),
    )
    op.create_index("uq_model_versions_one_active", "model_versions", ["status"], unique=True,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE, mssql_where=ACTIVE)
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_model_events_at", "model_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_model_events_at", table_name="model_events")
    op.drop_table("model_events")
    op.drop_index("uq_model_versions_one_active", table_name="model_versions")
    op.drop_table("model_versions")
