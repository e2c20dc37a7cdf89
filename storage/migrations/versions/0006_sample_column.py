"""The sample kind is stored as `sample`, not `split`.

`activation_records.split` and `simulated_records.split` held a record's sample kind (top, random,
quantile:<i>), while "split" everywhere else means the data split (train, valid, test: `data_split`). Both
columns are renamed to `sample`; values are unchanged, and the unique constraint `uq_record_position` keeps its
name over the renamed column.

Revision ID: 0006_sample_column
Revises: 0005_leases
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_sample_column"
down_revision = "0005_leases"
branch_labels = None
depends_on = None


def _rename(old: str, new: str) -> None:
    with op.batch_alter_table("activation_records") as batch:
        batch.alter_column(old, new_column_name=new, existing_type=sa.String(length=30), existing_nullable=False)
    with op.batch_alter_table("simulated_records") as batch:
        batch.alter_column(old, new_column_name=new, existing_type=sa.String(length=30), existing_nullable=True)


def upgrade() -> None:
    _rename("split", "sample")


def downgrade() -> None:
    _rename("sample", "split")
