"""The storage initializer's default image is the operator image of the installed
release: the Dockerfile puts ``ferryman.storage_init`` into that image, so an operator
must never point model pods at an initializer from another version."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from ferryman import settings

ROOT = Path(__file__).resolve().parents[2]


def test_default_is_the_operator_image_of_the_installed_version() -> None:
    installed = metadata.version("ferryman")
    assert f"ghcr.io/ferryman-dev/ferryman:{installed}" == settings.DEFAULT_IMAGE
    # The installed metadata is the project's version, not a stale install.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert installed == project["version"]


def test_settings_without_a_file_use_it() -> None:
    loaded = settings.load(environ={})
    assert loaded.storage_initializer_image == settings.DEFAULT_IMAGE


def test_an_explicit_image_and_an_empty_one_win() -> None:
    mirrored = "registry.internal/ferryman:0.1.0"
    assert (
        settings.load(
            environ={"FERRYMAN_STORAGE_INITIALIZER_IMAGE": mirrored}
        ).storage_initializer_image
        == mirrored
    )
    assert settings.Settings(storage_initializer_image=None).storage_initializer_image is None


def test_a_local_version_becomes_a_valid_tag() -> None:
    assert settings.default_image("1.2.0") == "ghcr.io/ferryman-dev/ferryman:1.2.0"
    assert settings.default_image("1.2.0+g1a2b3c") == "ghcr.io/ferryman-dev/ferryman:1.2.0-g1a2b3c"
