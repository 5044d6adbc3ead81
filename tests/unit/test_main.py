"""The operator's startup settings: ferryman's own finalizer and progress prefix,
standalone mode, and watch timeouts that notice a silently dead watch; and its own
settings file."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
from pydantic import ValidationError

from ferryman import main, settings
from ferryman.handlers import lifecycle


def test_startup_names_ferryman_storage_and_timeouts() -> None:
    s = kopf.OperatorSettings()
    lifecycle.apply_settings(s)
    assert s.persistence.finalizer == "ferryman.dev/finalizer"
    assert isinstance(s.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert s.persistence.progress_storage.prefix == "ferryman.dev"
    assert s.peering.standalone is True
    assert s.watching.server_timeout is not None
    assert s.watching.client_timeout is not None
    assert s.watching.client_timeout > s.watching.server_timeout
    assert s.networking.request_timeout is not None


def test_namespaces_come_from_flags() -> None:
    args = main.parse_args(["-n", "a", "--namespace", "b"])
    assert args.namespace == ["a", "b"]


def test_settings_file_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "providers:\n"
        "  default: {address: 'http://127.0.0.1:9090', secretName: prom-creds}\n"
        "allowInlineAddresses: false\n"
        "metricsPort: 9100\n"
    )
    loaded = settings.load(path, environ={"FERRYMAN_ALLOW_INLINE_ADDRESSES": "true"})
    assert loaded.providers["default"].address == "http://127.0.0.1:9090"
    assert loaded.providers["default"].secret_name == "prom-creds"
    assert loaded.allow_inline_addresses is True  # the environment wins
    assert loaded.metrics_port == 9100
    assert settings.load(environ={}).providers == {}


def test_unknown_setting_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("allowInlineAdresses: true\n")  # typo
    with pytest.raises(ValidationError, match="allowInlineAdresses"):
        settings.load(path, environ={})
