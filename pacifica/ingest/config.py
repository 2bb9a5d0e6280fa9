"""Settings: read once from defaults, an INI file and the environment into frozen objects.

Precedence, lowest first: built-in defaults, the INI file (``-c``/``INGEST_CONFIG``),
the environment.  Every key can be set from the environment as
``INGEST_<SECTION>_<KEY>``; the original service's variable names
(``VOLUME_PATH``, ``PEEWEE_URL``, ...) keep working beside them.

Relative paths (the defaults under ``var/`` among them) are anchored in one folder, the
home (``home_folder``), never in the folder a command happens to run in.
"""
from __future__ import annotations

import os
import re
from configparser import ConfigParser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

# section -> key -> (default, the original service's environment variable or None)
DEFAULTS: dict[str, dict[str, tuple[str, str | None]]] = {
    "ingest": {
        "home": ("", "INGEST_HOME"),
        "volume_path": ("var/volume", "VOLUME_PATH"),
        "transfer_size": ("4 Mb", "TRANSFER_SIZE"),
        "auth_header": ("X-Http-Authed-User", "INGEST_AUTH_HEADER"),
        "default_user": ("root", "INGEST_DEFAULT_USER"),
        "max_bundle_size": ("100 Gb", None),
        "min_free_space": ("1 Gb", None),
        "max_metadata_size": ("64 Mb", None),
        "max_members": ("1000000", None),
        "max_total_size": ("0", None),
        "max_unpack_ratio": ("100", None),
        "progress_interval": ("0.5", None),
        "stale_after": ("3600", None),
        "thread_pool": ("32", None),
        "socket_timeout": ("300", None),
        "tus_expiry": ("604800", None),
        "tus_max_metadata": ("4 Kb", None),
        "tus_user_quota": ("1 Tb", None),
        "public_url": ("", None),
        "cors_origins": ("", None),
        "keep_failed": ("86400", None),
        "idempotency_ttl": ("86400", None),
        "min_upload_rate": ("1 Kb", None),
        "upload_rate_window": ("60", None),
        "max_uploads": ("16", None),
        "max_uploads_per_user": ("4", None),
        "hash_on_arrival": ("false", None),
    },
    "auth": {
        "trusted_proxies": ("127.0.0.1, ::1", None),
        "require_user": ("false", None),
        "admins": ("", None),
    },
    "move": {"allowed_roots": ("", None)},
    "notify": {
        "urls": ("", None),
        "secret": ("", None),
        "allow_client_urls": ("false", None),
        "allowed_hosts": ("", None),
        "retry_for": ("3600", None),
        "timeout": ("10", None),
    },
    "logging": {
        "level": ("INFO", "INGEST_LOG_LEVEL"),
        "format": ("text", None),
        "access_log_sample": ("1.0", None),
    },
    "uniqueid": {"url": ("", "UNIQUEID_URL")},
    "policy": {
        "ingest_url": ("", "POLICY_INGEST_URL"),
        "required": ("submitter, project, instrument", None),
    },
    "archiveinterface": {
        "url": ("", "ARCHIVEINTERFACE_URL"),
        "local_path": ("var/archive", "ARCHIVE_PATH"),
        "fsync": ("true", None),
    },
    "metadata": {"ingest_url": ("", "METADATA_INGEST_URL")},
    "database": {
        "peewee_url": ("sqlite:///var/ingest.sqlite3", "PEEWEE_URL"),
        "connect_attempts": ("10", "DATABASE_CONNECT_ATTEMPTS"),
        "connect_wait": ("2", "DATABASE_CONNECT_WAIT"),
    },
    "celery": {
        "broker_url": ("filesystem://", "BROKER_URL"),
        "backend_url": ("", "BACKEND_URL"),
        "queue_path": ("var/queue", None),
        "queue_name": ("ingest", None),
        "concurrency": ("2", None),
        "max_memory_per_child": ("512 Mb", None),
        "heartbeat_interval": ("5", None),
        "worker_timeout": ("30", None),
    },
    "http": {
        "connect_timeout": ("10", None),
        "read_timeout": ("300", None),
        "retries": ("5", None),
        "backoff": ("0.5", None),
        "parallel_uploads": ("1", None),
    },
}

_SIZE_UNITS = {
    "": 1, "b": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "Kb": 1024, "Mb": 1024**2, "Gb": 1024**3, "Tb": 1024**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
    # one letter, either case, binary as in dd and curl: 512k, 16M, 16m, 1G
    "k": 1024, "K": 1024, "m": 1024**2, "M": 1024**2, "g": 1024**3, "G": 1024**3,
    "t": 1024**4, "T": 1024**4,
}


class ConfigError(ValueError):
    """A setting that cannot be understood."""


def parse_size(text: str) -> int:
    """Parse '4 Mb' (binary, as the original), '10 MB' (decimal), '2GiB', '16M' or '512k'
    (binary) or '1024' into bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ConfigError(f"cannot read {text!r} as a size (examples: '16M', '512k', '1G', "
                          "'4 Mb', '10 GB', '1048576')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _bool(text: str) -> bool:
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def _words(text: str) -> tuple[str, ...]:
    """A list setting: items separated by commas or white space."""
    return tuple(item for item in re.split(r"[,\s]+", text) if item)


def _default(section: str, key: str, kind=str):
    """A dataclass field's default: DEFAULTS' text read as ``load`` reads it (one place)."""
    return kind(DEFAULTS[section][key][0])


@dataclass(frozen=True)
class IngestSettings:
    """Frontend and pipeline settings."""

    volume_path: str
    transfer_size: int = _default("ingest", "transfer_size", parse_size)
    auth_header: str = _default("ingest", "auth_header")
    default_user: str = _default("ingest", "default_user")
    max_bundle_size: int = _default("ingest", "max_bundle_size", parse_size)
    min_free_space: int = _default("ingest", "min_free_space", parse_size)
    max_metadata_size: int = _default("ingest", "max_metadata_size", parse_size)
    max_members: int = _default("ingest", "max_members", int)
    max_total_size: int = _default("ingest", "max_total_size", parse_size)
    max_unpack_ratio: int = _default("ingest", "max_unpack_ratio", int)
    progress_interval: float = _default("ingest", "progress_interval", float)
    stale_after: float = _default("ingest", "stale_after", float)
    thread_pool: int = _default("ingest", "thread_pool", int)
    socket_timeout: float = _default("ingest", "socket_timeout", float)
    tus_expiry: float = _default("ingest", "tus_expiry", float)
    tus_max_metadata: int = _default("ingest", "tus_max_metadata", parse_size)
    tus_user_quota: int = _default("ingest", "tus_user_quota", parse_size)
    public_url: str = _default("ingest", "public_url")
    cors_origins: tuple[str, ...] = _default("ingest", "cors_origins", _words)
    keep_failed: float = _default("ingest", "keep_failed", float)
    idempotency_ttl: float = _default("ingest", "idempotency_ttl", float)
    min_upload_rate: int = _default("ingest", "min_upload_rate", parse_size)
    upload_rate_window: float = _default("ingest", "upload_rate_window", float)
    max_uploads: int = _default("ingest", "max_uploads", int)
    max_uploads_per_user: int = _default("ingest", "max_uploads_per_user", int)
    hash_on_arrival: bool = _default("ingest", "hash_on_arrival", _bool)
    home: str = _default("ingest", "home")


@dataclass(frozen=True)
class AuthSettings:
    """Who a request comes from: trusted proxies, required identity, admins."""

    trusted_proxies: tuple[str, ...] = _default("auth", "trusted_proxies", _words)
    require_user: bool = _default("auth", "require_user", _bool)
    admins: tuple[str, ...] = _default("auth", "admins", _words)


@dataclass(frozen=True)
class NotifySettings:
    """Completion webhooks: where to POST, the HMAC secret, client URLs and their allow-list."""

    urls: tuple[str, ...] = _default("notify", "urls", _words)
    secret: str = _default("notify", "secret")
    allow_client_urls: bool = _default("notify", "allow_client_urls", _bool)
    allowed_hosts: tuple[str, ...] = _default("notify", "allowed_hosts", _words)
    retry_for: float = _default("notify", "retry_for", float)
    timeout: float = _default("notify", "timeout", float)


@dataclass(frozen=True)
class LoggingSettings:
    """Log level and format of every process; the share of get_state requests access-logged."""

    level: str = _default("logging", "level")
    format: str = _default("logging", "format")
    access_log_sample: float = _default("logging", "access_log_sample", float)


@dataclass(frozen=True)
class MoveSettings:
    """``/move``: refused unless sources lie beneath one of these roots."""

    allowed_roots: tuple[str, ...] = _default("move", "allowed_roots", _words)


@dataclass(frozen=True)
class ServiceUrls:
    """Remote Pacifica services; an empty URL selects the embedded implementation."""

    uniqueid: str = _default("uniqueid", "url")
    policy: str = _default("policy", "ingest_url")
    archiveinterface: str = _default("archiveinterface", "url")
    metadata: str = _default("metadata", "ingest_url")


@dataclass(frozen=True)
class PolicySettings:
    """The built-in policy: Transactions fields every bundle must name."""

    required: tuple[str, ...] = _default("policy", "required", _words)


@dataclass(frozen=True)
class ArchiveSettings:
    """Where files go when no Archive Interface URL is set."""

    local_path: str
    fsync: bool = _default("archiveinterface", "fsync", _bool)


@dataclass(frozen=True)
class DatabaseSettings:
    """A peewee database URL and how hard to try connecting."""

    url: str
    connect_attempts: int = _default("database", "connect_attempts", int)
    connect_wait: float = _default("database", "connect_wait", float)


@dataclass(frozen=True)
class CelerySettings:
    """Broker settings; ``filesystem://`` needs no server."""

    broker_url: str
    queue_path: str
    backend_url: str = _default("celery", "backend_url")
    queue_name: str = _default("celery", "queue_name")
    concurrency: int = _default("celery", "concurrency", int)
    max_memory_per_child: int = _default("celery", "max_memory_per_child", parse_size)
    heartbeat_interval: float = _default("celery", "heartbeat_interval", float)
    worker_timeout: float = _default("celery", "worker_timeout", float)


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts and retries for every call to a remote service."""

    connect_timeout: float = _default("http", "connect_timeout", float)
    read_timeout: float = _default("http", "read_timeout", float)
    retries: int = _default("http", "retries", int)
    backoff: float = _default("http", "backoff", float)
    parallel_uploads: int = _default("http", "parallel_uploads", int)


@dataclass(frozen=True)
class Settings:
    """Everything a process needs, read once and passed down."""

    ingest: IngestSettings
    services: ServiceUrls
    archive: ArchiveSettings
    database: DatabaseSettings
    celery: CelerySettings
    http: HttpSettings = field(default_factory=HttpSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    move: MoveSettings = field(default_factory=MoveSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)


def _env_names(section: str, key: str, original: str | None) -> list[str]:
    names = [f"INGEST_{section.upper()}_{key.upper()}"]
    if original:
        names.append(original)
    return names


def config_path(path: str | None = None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The INI file in use: the one given, else ``$INGEST_CONFIG``, else none."""
    return path or environ.get("INGEST_CONFIG") or None


# The source checkout this package runs from, when it does (``pip install -e``): the folder
# ``scripts/run.sh`` changes to, so its ``./var`` is the default home's ``var``.
CHECKOUT = Path(__file__).resolve().parents[2]


def home_folder(home: str, path: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The folder relative paths are taken from, absolute.

    ``[ingest] home`` (``INGEST_HOME``) when set (itself relative to the config file's folder,
    or to the current one without a file); else the config file's folder; else the source
    checkout (where ``scripts/run.sh`` runs); else ``$XDG_DATA_HOME/pacifica-ingest``
    (``~/.local/share/pacifica-ingest``) for an installed package.
    """
    base = os.path.dirname(os.path.realpath(path)) if path else os.getcwd()
    if home:
        return os.path.normpath(os.path.join(base, os.path.expanduser(home)))
    if path:
        return base
    if (CHECKOUT / "scripts" / "run.sh").is_file():
        return str(CHECKOUT)
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                          "share")
    return os.path.join(data, "pacifica-ingest")


def read_raw(path: str | None = None, environ: Mapping[str, str] = os.environ) -> ConfigParser:
    """Merge defaults, the INI file and the environment into one ConfigParser."""
    parser = ConfigParser(interpolation=None)
    for section, keys in DEFAULTS.items():
        parser.add_section(section)
        for key, (default, _) in keys.items():
            parser.set(section, key, default)
    path = config_path(path, environ)
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path} does not exist")
        parser.read(path, encoding="utf-8")
    for section, keys in DEFAULTS.items():
        for key, (_, original) in keys.items():
            for name in _env_names(section, key, original):
                if name in environ:
                    parser.set(section, key, environ[name])
                    break
    return parser


def load(path: str | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the settings once; relative paths are taken from the home (``home_folder``)."""
    path = config_path(path, environ)
    raw = read_raw(path, environ)

    def get(section: str, key: str) -> str:
        return raw.get(section, key).strip()

    home = home_folder(get("ingest", "home"), path, environ)

    def anchored(value: str) -> str:
        return os.path.normpath(os.path.join(home, value))

    def number(section: str, key: str, kind=int):
        try:
            return kind(get(section, key))
        except ValueError as err:
            raise ConfigError(f"[{section}] {key} = {get(section, key)!r} is not a number") from err

    def size(section: str, key: str) -> int:
        return parse_size(get(section, key))

    ingest = IngestSettings(
        volume_path=anchored(get("ingest", "volume_path")),
        transfer_size=max(size("ingest", "transfer_size"), 4096),
        auth_header=get("ingest", "auth_header"),
        default_user=get("ingest", "default_user"),
        max_bundle_size=size("ingest", "max_bundle_size"),
        min_free_space=size("ingest", "min_free_space"),
        max_metadata_size=size("ingest", "max_metadata_size"),
        max_members=number("ingest", "max_members"),
        max_total_size=size("ingest", "max_total_size"),
        max_unpack_ratio=number("ingest", "max_unpack_ratio"),
        progress_interval=number("ingest", "progress_interval", float),
        stale_after=number("ingest", "stale_after", float),
        thread_pool=number("ingest", "thread_pool"),
        socket_timeout=number("ingest", "socket_timeout", float),
        tus_expiry=number("ingest", "tus_expiry", float),
        tus_max_metadata=size("ingest", "tus_max_metadata"),
        tus_user_quota=size("ingest", "tus_user_quota"),
        public_url=get("ingest", "public_url").rstrip("/"),
        cors_origins=_words(get("ingest", "cors_origins")),
        keep_failed=number("ingest", "keep_failed", float),
        idempotency_ttl=number("ingest", "idempotency_ttl", float),
        min_upload_rate=size("ingest", "min_upload_rate"),
        upload_rate_window=number("ingest", "upload_rate_window", float),
        max_uploads=number("ingest", "max_uploads"),
        max_uploads_per_user=number("ingest", "max_uploads_per_user"),
        hash_on_arrival=_bool(get("ingest", "hash_on_arrival")),
        home=home,
    )
    services = ServiceUrls(
        uniqueid=get("uniqueid", "url").rstrip("/"),
        policy=get("policy", "ingest_url"),
        archiveinterface=get("archiveinterface", "url").rstrip("/"),
        metadata=get("metadata", "ingest_url"),
    )
    archive = ArchiveSettings(
        local_path=anchored(get("archiveinterface", "local_path")),
        fsync=_bool(get("archiveinterface", "fsync")),
    )
    database = DatabaseSettings(
        url=_absolute_sqlite_url(get("database", "peewee_url"), anchored),
        connect_attempts=number("database", "connect_attempts"),
        connect_wait=number("database", "connect_wait", float),
    )
    celery = CelerySettings(
        broker_url=get("celery", "broker_url"),
        backend_url=get("celery", "backend_url"),
        queue_path=anchored(get("celery", "queue_path")),
        queue_name=get("celery", "queue_name"),
        concurrency=number("celery", "concurrency"),
        max_memory_per_child=size("celery", "max_memory_per_child"),
        heartbeat_interval=number("celery", "heartbeat_interval", float),
        worker_timeout=number("celery", "worker_timeout", float),
    )
    http = HttpSettings(
        connect_timeout=number("http", "connect_timeout", float),
        read_timeout=number("http", "read_timeout", float),
        retries=number("http", "retries"),
        backoff=number("http", "backoff", float),
        parallel_uploads=max(number("http", "parallel_uploads"), 1),
    )
    auth = AuthSettings(
        trusted_proxies=_words(get("auth", "trusted_proxies")),
        require_user=_bool(get("auth", "require_user")),
        admins=_words(get("auth", "admins")),
    )
    move = MoveSettings(
        allowed_roots=tuple(anchored(root) for root in _words(get("move", "allowed_roots"))),
    )
    log_settings = LoggingSettings(
        level=_choice(get("logging", "level").upper(), "logging", "level", LOG_LEVELS),
        format=_choice(get("logging", "format").lower(), "logging", "format", ("text", "json")),
        access_log_sample=_fraction(number("logging", "access_log_sample", float), "logging",
                                    "access_log_sample"),
    )
    notify = NotifySettings(
        urls=_words(get("notify", "urls")),
        secret=get("notify", "secret"),
        allow_client_urls=_bool(get("notify", "allow_client_urls")),
        allowed_hosts=_words(get("notify", "allowed_hosts")),
        retry_for=number("notify", "retry_for", float),
        timeout=number("notify", "timeout", float),
    )
    if (notify.urls or notify.allow_client_urls) and not notify.secret:
        raise ConfigError("[notify] secret is required to sign webhooks: set it (e.g. "
                          "INGEST_NOTIFY_SECRET) to a long random string shared with receivers")
    policy = PolicySettings(required=_words(get("policy", "required")))
    return Settings(ingest, services, archive, database, celery, http, auth, move, log_settings,
                    notify, policy)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _choice(value: str, section: str, key: str, allowed: tuple[str, ...]) -> str:
    """A setting that must be one of a few words."""
    if value not in allowed:
        raise ConfigError(f"[{section}] {key} = {value!r}: use one of {', '.join(allowed)}")
    return value


def _fraction(value: float, section: str, key: str) -> float:
    """A setting that must lie from 0 to 1."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"[{section}] {key} = {value!r}: use a number from 0 to 1")
    return value


def _absolute_sqlite_url(url: str, anchored) -> str:
    """Pin a relative SQLite path to the home so every process, run from anywhere, agrees."""
    for scheme in ("sqlite:///", "sqliteext:///", "sqlite+pool:///"):
        if url.startswith(scheme):
            path = url[len(scheme):]
            if path and path != ":memory:" and not path.startswith("/"):
                return scheme + anchored(path)
    return url
