"""Leases: the work queue of a distributed explain or rescore (one row per feature and configuration).

Revision ID: 0005_leases
Revises: 0004_windows
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_leases"
down_revision = "0004_windows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("feature_id", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("finished", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["feature_id"], ["features.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("feature_id", "config_hash"),
    )
    op.create_index("ix_leases_claimable", "leases", ["config_hash", "finished", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_leases_claimable", table_name="leases")
    op.drop_table("leases")
