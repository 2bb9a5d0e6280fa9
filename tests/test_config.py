"""Settings: defaults, INI file, environment (original names and INGEST_<SECTION>_<KEY>)."""
from __future__ import annotations

import os

import pytest

from pacifica.ingest.config import ConfigError, load, parse_size


def test_defaults_are_the_embedded_ones():
    settings = load(None, {})
    assert settings.services.uniqueid == settings.services.archiveinterface == ""
    assert settings.celery.broker_url == "filesystem://"
    assert settings.database.url.startswith("sqlite:///") and os.path.isabs(
        settings.database.url[len("sqlite:///"):])
    assert settings.ingest.transfer_size == 4 * 1024 * 1024
    assert settings.ingest.auth_header == "X-Http-Authed-User"


def test_file_then_environment(tmp_path):
    path = tmp_path / "ingest.cfg"
    path.write_text("[ingest]\nvolume_path = /data/vol\ntransfer_size = 1 MB\n"
                    "[uniqueid]\nurl = http://ids:8051/\n")
    settings = load(str(path), {"TRANSFER_SIZE": "2 Mb", "INGEST_HTTP_RETRIES": "7"})
    assert settings.ingest.volume_path == "/data/vol"
    assert settings.ingest.transfer_size == 2 * 1024 * 1024  # the environment wins
    assert settings.services.uniqueid == "http://ids:8051"
    assert settings.http.retries == 7


def test_original_variable_names():
    environ = {"VOLUME_PATH": "/v", "PEEWEE_URL": "mysql://root@db/ingest",
               "BROKER_URL": "amqp://guest:guest@mq//", "UNIQUEID_URL": "http://u",
               "POLICY_INGEST_URL": "http://p/ingest", "ARCHIVEINTERFACE_URL": "http://a",
               "METADATA_INGEST_URL": "http://m/ingest", "INGEST_AUTH_HEADER": "X-User",
               "INGEST_DEFAULT_USER": "bob"}
    settings = load(None, environ)
    assert settings.ingest.volume_path == "/v"
    assert settings.database.url == "mysql://root@db/ingest"
    assert settings.celery.broker_url == "amqp://guest:guest@mq//"
    assert (settings.services.uniqueid, settings.services.policy, settings.services.archiveinterface,
            settings.services.metadata) == ("http://u", "http://p/ingest", "http://a",
                                            "http://m/ingest")
    assert (settings.ingest.auth_header, settings.ingest.default_user) == ("X-User", "bob")


@pytest.mark.parametrize("text, expected", [("4 Mb", 4 * 1024**2), ("10 MB", 10**7),
                                            ("2GiB", 2 * 1024**3), ("1024", 1024), ("0", 0)])
def test_sizes(text, expected):
    assert parse_size(text) == expected


def test_bad_values_say_which_setting():
    with pytest.raises(ConfigError, match="size"):
        load(None, {"TRANSFER_SIZE": "lots"})
    with pytest.raises(ConfigError, match=r"\[http\] retries"):
        load(None, {"INGEST_HTTP_RETRIES": "many"})
    with pytest.raises(ConfigError, match="does not exist"):
        load("/no/such/file.cfg", {})


def test_shipped_config_file_matches_the_defaults():
    shipped = os.path.join(os.path.dirname(__file__), "..", "config.cfg")
    assert load(shipped, {}) == load(None, {})


def test_relative_paths_come_from_ingest_home_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    settings = load(None, {"INGEST_HOME": str(home)})
    assert settings.ingest.home == str(home)
    assert settings.ingest.volume_path == str(home / "var" / "volume")
    assert settings.archive.local_path == str(home / "var" / "archive")
    assert settings.celery.queue_path == str(home / "var" / "queue")
    assert settings.database.url == f"sqlite:///{home / 'var' / 'ingest.sqlite3'}"
    # an absolute path stays as it is
    assert load(None, {"INGEST_HOME": str(home), "VOLUME_PATH": "/v"}).ingest.volume_path == "/v"


def test_relative_paths_come_from_the_config_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "ingest.cfg").write_text("[ingest]\nvolume_path = bundles\n")
    monkeypatch.chdir(tmp_path)
    settings = load(str(folder / "ingest.cfg"), {})
    assert settings.ingest.home == str(folder)
    assert settings.ingest.volume_path == str(folder / "bundles")
    assert settings.database.url == f"sqlite:///{folder / 'var' / 'ingest.sqlite3'}"
    # a relative home in the file is taken from the file's folder; INGEST_HOME wins over it
    (folder / "ingest.cfg").write_text("[ingest]\nhome = ../srv\n")
    assert load(str(folder / "ingest.cfg"), {}).ingest.home == str(tmp_path / "srv")
    assert load(str(folder / "ingest.cfg"), {"INGEST_HOME": "/opt/x"}).ingest.home == "/opt/x"


def test_default_home_is_the_checkout_scripts_run_sh_uses(tmp_path, monkeypatch):
    checkout = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    assert os.path.isfile(os.path.join(checkout, "scripts", "run.sh"))
    monkeypatch.chdir(tmp_path)
    settings = load(None, {})
    assert settings.ingest.home == checkout
    assert settings.ingest.volume_path == os.path.join(checkout, "var", "volume")
def test_dataclass_defaults_are_the_defaults_table():
    """Every field default is DEFAULTS' value as load() reads it: one place for defaults."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    loaded = load(environ={})
    for section in dataclasses.fields(loaded):
        value = getattr(loaded, section.name)
        for item in dataclasses.fields(value):
            if (section.name, item.name) == ("ingest", "home"):
                continue  # load() resolves it: INGEST_HOME, the config file's folder or the checkout
            if item.default is not dataclasses.MISSING:
                assert getattr(value, item.name) == item.default, (section.name, item.name)
