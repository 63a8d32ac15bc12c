"""Settings resolution: env > keel.toml > defaults, with the source of each."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.config import load_settings
from keel.exceptions import ConfigError


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = load_settings(environ={}, cwd=tmp_path)
    assert s.home == tmp_path / ".keel"
    assert s.store_uri == f"sqlite:///{tmp_path / '.keel' / 'keel.db'}"
    assert s.artifact_uri == str(tmp_path / ".keel" / "objects")
    assert s.sources["store_uri"].startswith("default")


def test_toml_then_env_precedence(tmp_path: Path) -> None:
    (tmp_path / "keel.toml").write_text(
        "[keel]\n"
        'store_uri = "postgresql://u@h/db"\n'
        'artifact_uri = "s3://b/p"\n'
        "heartbeat_timeout = 30\n"
    )
    s = load_settings(environ={"KEEL_ARTIFACT_URI": "/data/objects"}, cwd=tmp_path)
    assert s.store_uri == "postgresql://u@h/db"
    assert s.sources["store_uri"] == str(tmp_path / "keel.toml")
    assert (
        s.artifact_uri == "/data/objects" and s.sources["artifact_uri"] == "env:KEEL_ARTIFACT_URI"
    )
    assert s.heartbeat_timeout == 30.0
    rows = {name: (value, source) for name, value, source in s.describe()}
    assert rows["artifact_uri"] == ("/data/objects", "env:KEEL_ARTIFACT_URI")


def test_keel_config_variable_and_relative_home(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "team.toml"
    cfg.parent.mkdir()
    cfg.write_text('home = "state"\n')  # a top-level table works too
    s = load_settings(environ={"KEEL_CONFIG": str(cfg)}, cwd=tmp_path)
    assert s.home == tmp_path / "state"


@pytest.mark.parametrize(
    ("content", "env", "match"),
    [
        ("[keel]\nstore_url = 'x'\n", {}, "unknown setting 'store_url'.*Did you mean 'store_uri'"),
        ("[keel\n", {}, "Cannot parse"),
        ("", {"KEEL_FLUSH_INTERVAL": "soon"}, "must be a number of seconds"),
        ("", {"KEEL_HEARTBEAT_TIMEOUT": "-1"}, "must be > 0"),
        ("", {"KEEL_CONFIG": "/nonexistent/keel.toml"}, "not a file"),
    ],
)
def test_bad_config_is_a_clear_error(
    tmp_path: Path, content: str, env: dict[str, str], match: str
) -> None:
    if content:
        (tmp_path / "keel.toml").write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_settings(environ=env, cwd=tmp_path)
