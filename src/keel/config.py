"""Settings, resolved from environment variables, ``keel.toml`` and defaults.

Precedence, highest first: ``KEEL_*`` environment variables, the ``[keel]``
table of a ``keel.toml`` (``$KEEL_CONFIG``, else ``./keel.toml``), then the
defaults below. :func:`load_settings` remembers where every value came from,
which ``keel config`` prints.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from keel.exceptions import ConfigError, did_you_mean

__all__ = ["Settings", "load_settings"]


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one keel installation.

    Attributes:
        home: folder holding the embedded store and objects (``.keel``).
        store_uri: SQLAlchemy URL of the metadata store.
        artifact_uri: root of the object store (a folder, ``file://`` or ``s3://``).
        s3_endpoint_url: endpoint of an S3-compatible server (MinIO, moto ...).
        heartbeat_interval: seconds between heartbeats of an active run.
        heartbeat_timeout: seconds without heartbeat before a run counts as dead.
        flush_interval: seconds between background flushes of buffered metrics.
        user: the actor recorded on runs and audit events.
        verify_keys: Ed25519 public-key PEM files; when set, loading a registered
            model requires a valid signature from one of them.
        tracking_uri: URL of a keel server (``http://host:5000``); when set, the
            Python API and the CLI use that server instead of ``store_uri`` and
            ``artifact_uri``.
        max_request_size: largest JSON request body ``keel server`` accepts, in
            bytes (blob uploads are streamed and not limited by it).
        auth: access control of ``keel server``: off (a local, trusted setup) or on
            (every request needs an API token; roles decide what it may do).
        ui_session_ttl: seconds a web UI login lasts (with auth on) before it must log in again.
        tracking_token: API token the client sends to ``tracking_uri``.
        data_remote: where ``keel data push``/``pull`` exchange dataset blobs when
            ``--remote`` is not given: a folder, ``file://`` or ``s3://bucket/prefix``.
        prediction_log: where ``keel serve`` logs predictions: ``sql`` (the metadata
            store, default), ``parquet`` (Parquet files under ``prediction_log_uri``) or ``off``.
        prediction_log_uri: folder, ``file://`` or ``s3://`` URL of the Parquet prediction
            log (default ``KEEL_HOME/predictions``).
        alert_webhook: URL that receives Slack-compatible JSON when a deployment is rolled
            back automatically (and, later, on monitor alerts).
        sources: where each value came from (``env:KEEL_HOME``, ``keel.toml``, ``default``).
    """

    home: Path
    store_uri: str
    artifact_uri: str
    s3_endpoint_url: str | None = None
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 60.0
    flush_interval: float = 1.0
    user: str = "unknown"
    verify_keys: tuple[str, ...] = ()
    tracking_uri: str | None = None
    max_request_size: int = 64 * 1024 * 1024
    auth: bool = False
    ui_session_ttl: float = 12 * 3600.0
    tracking_token: str | None = field(default=None, repr=False)
    data_remote: str | None = None
    prediction_log: str = "sql"
    prediction_log_uri: str | None = None
    alert_webhook: str | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (setting, value, source) for display."""
        rows = []
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if f.name == "tracking_token" and value:
                value = "<set>"  # a credential: never displayed
            rows.append((f.name, str(value), self.sources.get(f.name, "default")))
        return rows


_ENV = {
    "home": "KEEL_HOME",
    "store_uri": "KEEL_STORE_URI",
    "artifact_uri": "KEEL_ARTIFACT_URI",
    "s3_endpoint_url": "KEEL_S3_ENDPOINT_URL",
    "heartbeat_interval": "KEEL_HEARTBEAT_INTERVAL",
    "heartbeat_timeout": "KEEL_HEARTBEAT_TIMEOUT",
    "flush_interval": "KEEL_FLUSH_INTERVAL",
    "user": "KEEL_USER",
    "verify_keys": "KEEL_VERIFY_KEYS",
    "tracking_uri": "KEEL_TRACKING_URI",
    "max_request_size": "KEEL_MAX_REQUEST_SIZE",
    "auth": "KEEL_AUTH",
    "ui_session_ttl": "KEEL_UI_SESSION_TTL",
    "tracking_token": "KEEL_TRACKING_TOKEN",
    "data_remote": "KEEL_DATA_REMOTE",
    "prediction_log": "KEEL_PREDICTION_LOG",
    "prediction_log_uri": "KEEL_PREDICTION_LOG_URI",
    "alert_webhook": "KEEL_ALERT_WEBHOOK",
}
_FLOATS = {"heartbeat_interval", "heartbeat_timeout", "flush_interval", "ui_session_ttl"}
_INTS = {"max_request_size"}


def _default_user() -> str:
    for var in ("USER", "USERNAME", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return "unknown"


def _parse_switch(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ConfigError(
        f"Setting 'auth' must be 'on' or 'off', got {value!r} (from {source}).", key="auth"
    )


def _check_tracking_uri(uri: str, sources: dict[str, str]) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(uri.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"tracking_uri must be the http:// or https:// URL of a keel server, such as "
            f"http://127.0.0.1:5000, got {uri!r} (from {sources['tracking_uri']}).",
            key="tracking_uri",
        )
    return uri.strip().rstrip("/")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"Cannot parse {path}: {exc}. Fix the TOML syntax.", path=str(path)
        ) from exc
    table = data.get("keel", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [keel] must be a table.", path=str(path))
    unknown = set(table) - set(_ENV)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"{path}: unknown setting '{key}'.{did_you_mean(key, _ENV)} "
            f"Known settings: {', '.join(sorted(_ENV))}.",
            path=str(path),
            key=key,
        )
    return table


def load_settings(environ: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Resolve settings from the environment, ``keel.toml`` and defaults."""
    env = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    config_path = Path(env["KEEL_CONFIG"]) if env.get("KEEL_CONFIG") else cwd / "keel.toml"
    if env.get("KEEL_CONFIG") and not config_path.is_file():
        raise ConfigError(
            f"KEEL_CONFIG points to {config_path}, which is not a file.", path=str(config_path)
        )
    toml = _read_toml(config_path) if config_path.is_file() else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, var in _ENV.items():
        if env.get(var):
            values[name], sources[name] = env[var], f"env:{var}"
        elif name in toml:
            values[name], sources[name] = toml[name], str(config_path)
    for name in _FLOATS & set(values):
        try:
            values[name] = float(values[name])
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"Setting '{name}' must be a number of seconds, got {values[name]!r} "
                f"(from {sources[name]}).",
                key=name,
            ) from exc
        if values[name] <= 0:
            raise ConfigError(f"Setting '{name}' must be > 0 (from {sources[name]}).", key=name)
    for name in _INTS & set(values):
        try:
            values[name] = int(values[name])
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"Setting '{name}' must be a whole number of bytes, got {values[name]!r} "
                f"(from {sources[name]}).",
                key=name,
            ) from exc
        if values[name] <= 0:
            raise ConfigError(f"Setting '{name}' must be > 0 (from {sources[name]}).", key=name)
    if "auth" in values:
        values["auth"] = _parse_switch(values["auth"], sources["auth"])
    if "tracking_uri" in values:
        values["tracking_uri"] = _check_tracking_uri(str(values["tracking_uri"]), sources)

    if "prediction_log" in values:
        mode = str(values["prediction_log"]).strip().lower()
        if mode not in ("sql", "parquet", "off"):
            raise ConfigError(
                f"Setting 'prediction_log' must be sql, parquet or off, got "
                f"{values['prediction_log']!r} (from {sources['prediction_log']}).",
                key="prediction_log",
            )
        values["prediction_log"] = mode

    if "verify_keys" in values:
        keys = values["verify_keys"]
        if isinstance(keys, str):
            keys = [k.strip() for k in keys.split(",") if k.strip()]
        values["verify_keys"] = tuple(str(k) for k in keys)
    home = Path(values.pop("home", cwd / ".keel")).expanduser()
    if not home.is_absolute():
        home = cwd / home
    sources.setdefault("home", "default")
    if "store_uri" not in values:
        values["store_uri"] = f"sqlite:///{home / 'keel.db'}"
        sources["store_uri"] = "default (KEEL_HOME)"
    if "artifact_uri" not in values:
        values["artifact_uri"] = str(home / "objects")
        sources["artifact_uri"] = "default (KEEL_HOME)"
    if "prediction_log_uri" not in values:
        values["prediction_log_uri"] = str(home / "predictions")
        sources["prediction_log_uri"] = "default (KEEL_HOME)"
    if "user" not in values:
        values["user"] = _default_user()
        sources["user"] = "default (login name)"
    return Settings(home=home, sources=sources, **values)
