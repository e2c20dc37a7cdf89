"""Full-text search over explanation text: FTS5 on SQLite, a GIN tsvector index on PostgreSQL.

Revision ID: 0002_fulltext
Revises: 0001_initial
"""
from alembic import op

revision = "0002_fulltext"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # External-content FTS5 table kept in step with explanations by triggers.
        op.execute(
            "CREATE VIRTUAL TABLE explanations_fts USING fts5(text, content='explanations', content_rowid='id', "
            "tokenize='porter unicode61')"
        )
        op.execute(
            "CREATE TRIGGER explanations_fts_ai AFTER INSERT ON explanations BEGIN "
            "INSERT INTO explanations_fts(rowid, text) VALUES (new.id, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER explanations_fts_ad AFTER DELETE ON explanations BEGIN "
            "INSERT INTO explanations_fts(explanations_fts, rowid, text) VALUES ('delete', old.id, old.text); END"
        )
        op.execute(
            "CREATE TRIGGER explanations_fts_au AFTER UPDATE OF text ON explanations BEGIN "
            "INSERT INTO explanations_fts(explanations_fts, rowid, text) VALUES ('delete', old.id, old.text); "
            "INSERT INTO explanations_fts(rowid, text) VALUES (new.id, new.text); END"
        )
    else:
        op.execute(
            "CREATE INDEX ix_explanations_fts ON explanations USING gin (to_tsvector('english', coalesce(text, '')))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trig in ("explanations_fts_ai", "explanations_fts_ad", "explanations_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trig}")
        op.execute("DROP TABLE IF EXISTS explanations_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_explanations_fts")
