"""Windows stored once, activations in binary.

A context window (model, corpus, document, offset, tokens) becomes one `windows` row shared by every record
that picked it; a record keeps its window id and its activations as a compact binary array (see
storage.core.activation_codec). Simulated records' expected/true activations and distributions become binary too.
Existing rows are converted in place, in chunks; values read back exactly as before.

Revision ID: 0004_windows
Revises: 0003_run_heartbeat
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from storage.core.activation_codec import decode, decode_rows, encode
from storage.records.windows import content_hash

revision = "0004_windows"
down_revision = "0003_run_heartbeat"
branch_labels = None
depends_on = None

CHUNK = 5_000

_records = sa.table(
    "activation_records", sa.column("id", sa.Integer), sa.column("feature_id", sa.Integer),
    sa.column("tokens", sa.JSON), sa.column("activations", sa.JSON), sa.column("corpus", sa.String),
    sa.column("document", sa.String), sa.column("offset", sa.Integer), sa.column("window_id", sa.Integer),
    sa.column("activations_bin", sa.LargeBinary),
)
_features = sa.table("features", sa.column("id", sa.Integer), sa.column("model_id", sa.Integer))
_windows = sa.table(
    "windows", sa.column("id", sa.Integer), sa.column("model_id", sa.Integer), sa.column("content_hash", sa.String),
    sa.column("corpus", sa.String), sa.column("document", sa.String), sa.column("offset", sa.Integer),
    sa.column("tokens", sa.JSON), sa.column("token_ids", sa.LargeBinary),
)
_simulated = sa.table(
    "simulated_records", sa.column("id", sa.Integer), sa.column("expected_activations", sa.JSON),
    sa.column("true_activations", sa.JSON), sa.column("distribution", sa.JSON),
    sa.column("expected_bin", sa.LargeBinary), sa.column("true_bin", sa.LargeBinary),
    sa.column("distribution_bin", sa.LargeBinary),
)


def upgrade() -> None:
    op.create_table(
        "windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("corpus", sa.String(length=300), nullable=True),
        sa.Column("document", sa.String(length=300), nullable=True),
        sa.Column("offset", sa.Integer(), nullable=True),
        sa.Column("token_ids", sa.LargeBinary(), nullable=True),
        sa.Column("tokens", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["subject_models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "content_hash", name="uq_window_content"),
    )
    with op.batch_alter_table("activation_records") as batch:
        batch.add_column(sa.Column("window_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("activations_bin", sa.LargeBinary(), nullable=True))
    _convert_records(op.get_bind())
    with op.batch_alter_table("activation_records") as batch:
        batch.drop_index("ix_records_feature")
        for column in ("tokens", "activations", "corpus", "document", "offset"):
            batch.drop_column(column)
        batch.alter_column("activations_bin", new_column_name="activations", existing_type=sa.LargeBinary(),
                           nullable=False)
        batch.alter_column("window_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key("fk_activation_records_window_id_windows", "windows", ["window_id"], ["id"])

    with op.batch_alter_table("simulated_records") as batch:
        for column in ("expected_bin", "true_bin", "distribution_bin"):
            batch.add_column(sa.Column(column, sa.LargeBinary(), nullable=True))
    _convert_simulated(op.get_bind())
    with op.batch_alter_table("simulated_records") as batch:
        for column in ("expected_activations", "true_activations", "distribution"):
            batch.drop_column(column)
        batch.alter_column("expected_bin", new_column_name="expected_activations", existing_type=sa.LargeBinary(),
                           nullable=False)
        batch.alter_column("true_bin", new_column_name="true_activations", existing_type=sa.LargeBinary())
        batch.alter_column("distribution_bin", new_column_name="distribution", existing_type=sa.LargeBinary())


def _chunks(bind: sa.Connection, stmt: sa.Select, id_column: sa.ColumnClause) -> Any:
    """Rows of `stmt` in id order, CHUNK at a time (keyset paging: memory stays flat on big tables)."""
    last = 0
    while True:
        rows = bind.execute(stmt.where(id_column > last).order_by(id_column).limit(CHUNK)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _convert_records(bind: sa.Connection) -> None:
    known: dict[tuple[int, str], int] = {}  # (model id, content hash) -> window id
    stmt = (sa.select(_records.c.id, _features.c.model_id, _records.c.tokens, _records.c.activations,
                      _records.c.corpus, _records.c.document, _records.c.offset)
            .join(_features, _features.c.id == _records.c.feature_id))
    for rows in _chunks(bind, stmt, _records.c.id):
        keys = [(r.model_id, content_hash(r.corpus, r.document, r.offset, r.tokens)) for r in rows]
        new = {key: r for key, r in zip(keys, rows) if key not in known}
        if new:
            bind.execute(sa.insert(_windows), [
                {"model_id": model_id, "content_hash": h, "corpus": r.corpus, "document": r.document,
                 "offset": r.offset, "tokens": r.tokens, "token_ids": None}
                for (model_id, h), r in new.items()])
            found = bind.execute(sa.select(_windows.c.model_id, _windows.c.content_hash, _windows.c.id).where(
                _windows.c.content_hash.in_([h for _, h in new]))).all()
            known.update({(m, h): wid for m, h, wid in found})
        bind.execute(
            sa.update(_records).where(_records.c.id == sa.bindparam("rid"))
            .values(window_id=sa.bindparam("wid"), activations_bin=sa.bindparam("acts")),
            [{"rid": r.id, "wid": known[key], "acts": encode(r.activations)} for key, r in zip(keys, rows)],
        )


def _convert_simulated(bind: sa.Connection) -> None:
    stmt = sa.select(_simulated.c.id, _simulated.c.expected_activations, _simulated.c.true_activations,
                     _simulated.c.distribution)
    for rows in _chunks(bind, stmt, _simulated.c.id):
        bind.execute(
            sa.update(_simulated).where(_simulated.c.id == sa.bindparam("sid"))
            .values(expected_bin=sa.bindparam("e"), true_bin=sa.bindparam("t"), distribution_bin=sa.bindparam("d")),
            [{"sid": r.id, "e": encode(r.expected_activations),
              "t": encode(r.true_activations) if r.true_activations is not None else None,
              "d": encode(r.distribution) if r.distribution is not None else None} for r in rows],
        )


def downgrade() -> None:
    """Back to JSON lists per record (tokens and provenance copied back from each record's window)."""
    bind = op.get_bind()
    with op.batch_alter_table("activation_records") as batch:
        batch.add_column(sa.Column("tokens", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("activations_json", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("corpus", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("document", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("offset", sa.Integer(), nullable=True))
    records = sa.table(
        "activation_records", sa.column("id", sa.Integer), sa.column("window_id", sa.Integer),
        sa.column("activations", sa.LargeBinary), sa.column("activations_json", sa.JSON),
        sa.column("tokens", sa.JSON), sa.column("corpus", sa.String), sa.column("document", sa.String),
        sa.column("offset", sa.Integer),
    )
    stmt = (sa.select(records.c.id, records.c.activations, _windows.c.tokens, _windows.c.corpus,
                      _windows.c.document, _windows.c.offset)
            .join(_windows, _windows.c.id == records.c.window_id))
    for rows in _chunks(bind, stmt, records.c.id):
        bind.execute(
            sa.update(records).where(records.c.id == sa.bindparam("rid")).values(
                activations_json=sa.bindparam("a"), tokens=sa.bindparam("t"), corpus=sa.bindparam("c"),
                document=sa.bindparam("d"), offset=sa.bindparam("o")),
            [{"rid": r.id, "a": decode(r.activations), "t": r.tokens, "c": r.corpus, "d": r.document,
              "o": r.offset} for r in rows])
    with op.batch_alter_table("activation_records") as batch:
        batch.drop_constraint("fk_activation_records_window_id_windows", type_="foreignkey")
        batch.drop_column("window_id")
        batch.drop_column("activations")
        batch.alter_column("activations_json", new_column_name="activations", existing_type=sa.JSON(),
                           nullable=False)
        batch.alter_column("tokens", existing_type=sa.JSON(), nullable=False)
        batch.create_index("ix_records_feature", ["feature_id", "data_split"])
    op.drop_table("windows")

    simulated = sa.table(
        "simulated_records", sa.column("id", sa.Integer), sa.column("expected_activations", sa.LargeBinary),
        sa.column("true_activations", sa.LargeBinary), sa.column("distribution", sa.LargeBinary),
        sa.column("e", sa.JSON), sa.column("t", sa.JSON), sa.column("d", sa.JSON),
    )
    with op.batch_alter_table("simulated_records") as batch:
        for column in ("e", "t", "d"):
            batch.add_column(sa.Column(column, sa.JSON(), nullable=True))
    stmt = sa.select(simulated.c.id, simulated.c.expected_activations, simulated.c.true_activations,
                     simulated.c.distribution)
    for rows in _chunks(bind, stmt, simulated.c.id):
        bind.execute(
            sa.update(simulated).where(simulated.c.id == sa.bindparam("sid")).values(
                e=sa.bindparam("ev"), t=sa.bindparam("tv"), d=sa.bindparam("dv")),
            [{"sid": r.id, "ev": decode(r.expected_activations),
              "tv": decode(r.true_activations) if r.true_activations is not None else None,
              "dv": decode_rows(r.distribution, len(decode(r.expected_activations)))
              if r.distribution is not None else None} for r in rows])
    with op.batch_alter_table("simulated_records") as batch:
        for column in ("expected_activations", "true_activations", "distribution"):
            batch.drop_column(column)
        batch.alter_column("e", new_column_name="expected_activations", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("t", new_column_name="true_activations", existing_type=sa.JSON())
        batch.alter_column("d", new_column_name="distribution", existing_type=sa.JSON())
