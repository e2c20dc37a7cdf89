"""Steering results: one row per feature and steering configuration (strength, KL, continuations, or failure).

Revision ID: 0009_steering
Revises: 0008_store_size
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_steering"
down_revision = "0008_store_size"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "steering_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("feature_id", sa.Integer(), sa.ForeignKey("features.id", ondelete="CASCADE"), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("strength", sa.Float(), nullable=True),
        sa.Column("kl", sa.Float(), nullable=True),
        sa.Column("target_kl", sa.Float(), nullable=False),
        sa.Column("prompts", sa.JSON(), nullable=False),
        sa.Column("steered", sa.JSON(), nullable=False),
        sa.Column("unsteered", sa.JSON(), nullable=False),
        sa.Column("forward_passes", sa.Integer(), nullable=True),
        sa.Column("elapsed_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("feature_id", "config_hash", name="uq_steering_config"),
    )


def downgrade() -> None:
    op.drop_table("steering_results")
