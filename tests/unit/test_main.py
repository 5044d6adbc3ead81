"""The operator's startup settings: ferryman's own finalizer and progress prefix,
standalone mode, and watch timeouts that notice a silently dead watch."""

from __future__ import annotations

import asyncio

import kopf

from ferryman import main


def test_startup_names_ferryman_storage_and_timeouts() -> None:
    settings = kopf.OperatorSettings()
    asyncio.run(main.configure(settings=settings))
    assert settings.persistence.finalizer == "ferryman.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.persistence.progress_storage.prefix == "ferryman.dev"
    assert settings.peering.standalone is True
    assert settings.watching.server_timeout is not None
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.networking.request_timeout is not None


def test_namespaces_come_from_flags() -> None:
    args = main.parse_args(["-n", "a", "--namespace", "b"])
    assert args.namespace == ["a", "b"]
