"""Rewrite versions/0001_initial.py from storage/schema.py (development only, before the first release).

Run: python -m storage.migrations.regenerate_initial
"""

import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

HERE = Path(__file__).parent


def main() -> None:
    initial = HERE / "versions" / "0001_initial.py"
    initial.unlink(missing_ok=True)
    fulltext = HERE / "versions" / "0002_fulltext.py"
    hidden = fulltext.with_suffix(".hold")
    fulltext.rename(hidden)  # autogenerate needs an empty history to diff against
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{tmp}/empty.db")
            cfg = Config()
            cfg.set_main_option("script_location", str(HERE))
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001_initial")
    finally:
        hidden.rename(fulltext)
    generated = next((HERE / "versions").glob("0001_initial*.py"))
    generated.rename(initial)


if __name__ == "__main__":
    main()
