"""Schema migrations: upgrade from empty on each backend, models match the history."""

from __future__ import annotations

import sqlalchemy as sa

from keel.store import SqlStore
from keel.store.migrate import MIGRATIONS, current_revision, upgrade
from keel.store.schema import metadata
from keel.store.sql import HEAD_REVISION


def test_head_constant_matches_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_upgrade_from_empty_and_models_match(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = sa.create_engine(store_url)
    if engine.dialect.name == "postgresql":  # the fixture database may be migrated already
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    before, after = upgrade(engine, store_url)
    assert (before, after) == (None, HEAD_REVISION)
    assert upgrade(engine, store_url) == (HEAD_REVISION, HEAD_REVISION)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == [], f"models and migrations differ: {diff}"
    engine.dispose()


def test_first_use_migrates_automatically(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/fresh/keel.db"
    store = SqlStore(url)
    store.create_experiment("x")
    with store.engine.connect() as conn:
        assert current_revision(conn) == HEAD_REVISION
    store.close()


def test_downgrade_and_upgrade_again(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/keel.db"
    engine = sa.create_engine(url)
    upgrade(engine, url)
    from alembic import command
    from alembic.config import Config

    with engine.connect() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
        conn.commit()
    with engine.connect() as conn:
        assert current_revision(conn) is None
        assert not sa.inspect(conn).has_table("runs")
    assert upgrade(engine, url)[1] == HEAD_REVISION
    engine.dispose()


def test_upgrade_from_0001_keeps_data_and_seeds_the_audit_chain(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine, store_url, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage, created_at, "
                "updated_at) VALUES ('old', '', 'active', 1, 1)"
            )
        )
    assert upgrade(engine, store_url) == ("0001", HEAD_REVISION)
    store = SqlStore(store_url)
    assert store.get_experiment_by_name("old").name == "old"
    store.registry.create_model("m", actor="a")
    assert store.registry.verify_audit() == (1, None)
    store.close()
    engine.dispose()
