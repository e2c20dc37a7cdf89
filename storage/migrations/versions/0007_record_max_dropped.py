"""Activation records lose their `max_activation` column.

No query filters or ranks records by it: every reader decodes the activations anyway and takes the max from
them (ActivationRecord.max_activation; the API's record dicts). Dropping it saves 9 of a record's ~300 bytes.
An `ALTER TABLE ... DROP COLUMN` (SQLite 3.35+, PostgreSQL); the downgrade adds it back, filled from the decoded
activations.

Revision ID: 0007_record_max_dropped
Revises: 0006_sample_column
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.core.activation_codec import decode

revision = "0007_record_max_dropped"
down_revision = "0006_sample_column"
branch_labels = None
depends_on = None

CHUNK = 5_000

_records = sa.table(
    "activation_records", sa.column("id", sa.Integer), sa.column("activations", sa.LargeBinary),
    sa.column("max_activation", sa.Float),
)


def upgrade() -> None:
    # Not a batch rebuild: that would copy every record of a big store into a new table.
    op.drop_column("activation_records", "max_activation")


def downgrade() -> None:
    op.add_column("activation_records", sa.Column("max_activation", sa.Float(), nullable=True))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(sa.select(_records.c.id, _records.c.activations).where(_records.c.id > last)
                            .order_by(_records.c.id).limit(CHUNK)).all()
        if not rows:
            break
        conn.execute(sa.update(_records).where(_records.c.id == sa.bindparam("rid")),
                     [{"rid": rid, "max_activation": max(decode(blob))} for rid, blob in rows])
        last = rows[-1][0]
    with op.batch_alter_table("activation_records") as batch:
        batch.alter_column("max_activation", existing_type=sa.Float(), nullable=False)
