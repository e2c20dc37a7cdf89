"""Activation records: sample kind and data split as small integer codes; on SQLite a plain feature index in place
of the unique (feature, sample, position) index.

The text of the two columns was 11 of a record's ~290 bytes, and the unique index (feature id, sample text,
position, row id) another 20. The codes (storage.core.record_codes: top 0, random 1, bottom 2, quantile:<i> 16 + i;
train 0, valid 1, test 2) are converted in SQL; a value with no code stops the migration, naming it. SQLite
serialises writers, and the writers never take a slot twice (`add_records` skips taken slots, `save_layer` deletes
before it inserts), so there a non-unique index on feature_id serves the reads by feature; PostgreSQL keeps the
unique constraint, which guards concurrent writers under read committed. SQLite rebuilds the table once (batch);
the downgrade converts back to text and restores the unique constraint.

Revision ID: 0008_store_size
Revises: 0007_record_max_dropped
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_store_size"
down_revision = "0007_record_max_dropped"
branch_labels = None
depends_on = None

TABLE = "activation_records"
UNIQUE = "uq_record_position"
INDEX = "ix_activation_records_feature"
# Frozen copies of storage.core.record_codes at this revision.
SAMPLE_TO_CODE = ("CASE WHEN sample = 'top' THEN 0 WHEN sample = 'random' THEN 1 WHEN sample = 'bottom' THEN 2 "
                  "WHEN sample LIKE 'quantile:%' THEN 16 + CAST(SUBSTR(sample, 10) AS INTEGER) END")
SPLIT_TO_CODE = "CASE data_split WHEN 'train' THEN 0 WHEN 'valid' THEN 1 WHEN 'test' THEN 2 END"
CODE_TO_SAMPLE = ("CASE sample WHEN 0 THEN 'top' WHEN 1 THEN 'random' WHEN 2 THEN 'bottom' "
                  "ELSE 'quantile:' || CAST(sample - 16 AS VARCHAR(10)) END")
CODE_TO_SPLIT = "CASE data_split WHEN 0 THEN 'train' WHEN 1 THEN 'valid' WHEN 2 THEN 'test' END"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _convert(types: tuple[sa.types.TypeEngine, sa.types.TypeEngine], sample_sql: str, split_sql: str, *,
             unique: bool) -> None:
    """Fill new columns from the old ones in SQL, then put them in the old ones' place, with the unique constraint
    dropped (upgrade) or made (downgrade): one table rebuild on SQLite for the upgrade."""
    op.add_column(TABLE, sa.Column("sample_new", types[0], nullable=True))
    op.add_column(TABLE, sa.Column("split_new", types[1], nullable=True))
    op.execute(f"UPDATE {TABLE} SET sample_new = {sample_sql}, split_new = {split_sql}")
    bad = op.get_bind().execute(sa.text(
        f"SELECT id, sample, data_split FROM {TABLE} WHERE sample_new IS NULL OR split_new IS NULL LIMIT 1")).first()
    if bad is not None:
        raise RuntimeError(f"activation record {bad[0]}: sample {bad[1]!r} / data split {bad[2]!r} has no stored "
                           "code; fix or delete that record, then migrate again (nothing was changed)")
    with op.batch_alter_table(TABLE) as batch:
        if not unique:
            batch.drop_constraint(UNIQUE, type_="unique")
        batch.drop_column("sample")
        batch.drop_column("data_split")
        batch.alter_column("sample_new", new_column_name="sample", existing_type=types[0], nullable=False)
        batch.alter_column("split_new", new_column_name="data_split", existing_type=types[1], nullable=False)
    if unique:  # its own step: a batch drops a new constraint over columns it renames
        with op.batch_alter_table(TABLE) as batch:
            batch.create_unique_constraint(UNIQUE, ["feature_id", "sample", "position"])


def upgrade() -> None:
    _convert((sa.SmallInteger(), sa.SmallInteger()), SAMPLE_TO_CODE, SPLIT_TO_CODE, unique=not _sqlite())
    if _sqlite():
        op.create_index(INDEX, TABLE, ["feature_id"])


def downgrade() -> None:
    if _sqlite():
        op.drop_index(INDEX, table_name=TABLE)
    _convert((sa.String(30), sa.String(10)), CODE_TO_SAMPLE, CODE_TO_SPLIT, unique=True)
