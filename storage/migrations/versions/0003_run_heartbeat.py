"""Runs carry a heartbeat, so a run whose process died without a word is recognisable as stale.

Revision ID: 0003_run_heartbeat
Revises: 0002_fulltext
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_run_heartbeat"
down_revision = "0002_fulltext"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
