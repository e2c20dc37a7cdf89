"""The sample kind is stored as `sample`, not `split`.

`activation_records.split` and `simulated_records.split` held a record's sample kind (top, random,
quantile:<i>), while "split" everywhere else means the data split (train, valid, test: `data_split`). Both
columns are renamed to `sample`; values are unchanged, and the unique constraint `uq_record_position` keeps its
name over the renamed column.

Revision ID: 0006_sample_column
Revises: 0005_leases
"""
from alembic import op

revision = "0006_sample_column"
down_revision = "0005_leases"
branch_labels = None
depends_on = None


def _rename(old: str, new: str) -> None:
    # A plain ALTER TABLE ... RENAME COLUMN (SQLite 3.25+, PostgreSQL): the constraint follows the column and no
    # table is copied, where a batch rebuild would copy every record of a big store.
    for table in ("activation_records", "simulated_records"):
        op.alter_column(table, old, new_column_name=new)


def upgrade() -> None:
    _rename("split", "sample")


def downgrade() -> None:
    _rename("sample", "split")
