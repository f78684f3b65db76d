"""movies.keywords: the movie API's keywords kept with the row

The embedded text includes a movie's keywords; without a column, a movie re-embedded from the table alone
(a new model, a wiped vector store) lost them while its recorded hash still said they were there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("movies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keywords", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("movies", schema=None) as batch_op:
        batch_op.drop_column("keywords")
