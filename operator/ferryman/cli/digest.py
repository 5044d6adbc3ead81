"""``kubectl ferryman digest PATH|URI``: the digest to put in a ModelVersion's artifact.

Prints ``sha256:<64 hex>`` of a local file or directory (the tree digest of
docs/artifacts.md), or of an artifact in a store (``https``, ``s3``, ``gs``, ``oci``:
fetched into a temporary directory with the same code and credentials, from the
environment, as the storage initializer, then removed; ``pvc://claim/path`` under
``--pvc-root``). Needs no cluster. Exit codes: 0 printed, 1 the artifact could not be read
(the initializer's one-line ``<Reason>: <message>`` on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EPILOG = """a directory's digest is the sha256 of its manifest: one line per regular
file, '<sha256 hex>  <relative path>', sorted by path (sha256sum's format); symlinks are
refused, empty directories and permissions ignored (docs/artifacts.md)."""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``digest`` on the plugin's subcommand parsers ``sub``; it runs without a
    cluster (``args.run``)."""
    d = sub.add_parser(
        "digest",
        parents=parents,
        help="print the sha256 digest of a model file, directory or store URI",
        description=(__doc__ or "").split("\n\n")[1],
        epilog=EPILOG,
    )
    d.add_argument("target", metavar="PATH|URI")
    d.add_argument("--ca-file", default=None, help="CA bundle for https")
    d.add_argument("--pvc-root", default=Path("/mnt/pvc"), type=Path, help="claims' mounts")
    d.add_argument("--timeout", default=60.0, type=float, help="seconds per request")
    d.add_argument("--plain-http", action="store_true", help="an OCI registry without TLS")
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the digest on stdout; 1 with the failure's one line on stderr."""
    from ferryman.storage import failure, fetch

    options = fetch.Options(
        ca_file=args.ca_file,
        pvc_root=args.pvc_root,
        timeout=args.timeout,
        plain_http=args.plain_http,
    )
    try:
        print(fetch.digest(args.target, options))
    except failure.StorageError as e:
        print(f"error: {failure.line(e)}", file=sys.stderr)
        return 1
    return 0
