"""dbsync upgrades every older schema to this code's version (in-process, temp SQLite)."""
from __future__ import annotations

import pytest

from pacifica.ingest import db, schema
from pacifica.ingest.config import DatabaseSettings


@pytest.fixture
def database(tmp_path):
    """A fresh SQLite database bound to the models."""
    bound = db.bind(DatabaseSettings(url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}"))
    yield bound
    bound.close()


def _create_at(version: tuple[int, int], models) -> None:
    db.database_proxy.create_tables((schema.SchemaVersion, *models))
    for part, value in zip(("major", "minor"), version):
        schema.SchemaVersion.create(part=part, value=value)


def test_every_migration_reaches_this_version_with_every_table(database):
    first = min(schema.MIGRATIONS)
    added_later = set()
    for _, (_, step) in schema.MIGRATIONS.items():
        added_later.update(getattr(step, "models", ()))
    _create_at(first, [model for model in schema.MODELS if model not in added_later])
    assert schema.sync() == (schema.SCHEMA_MAJOR, schema.SCHEMA_MINOR)
    assert schema.is_equal()
    for model in schema.MODELS:
        assert database.table_exists(model._meta.table_name), model


def test_a_fresh_database_gets_the_current_version(database):
    assert schema.current_version() == (0, 0)
    assert schema.sync() == (schema.SCHEMA_MAJOR, schema.SCHEMA_MINOR)
    schema.require_compatible()
