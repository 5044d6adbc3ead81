"""The storage initializer: ``python -m ferryman.storage_init --uri U --digest D --dest DIR``.

Runs as an init container before the model server (``plan/initializer.py`` renders it).
It fetches the artifact (a file, or a directory tree) into ``DIR`` and verifies its
digest (``ferryman.storage.tree``); a ``pvc://`` artifact is verified where the claim is
mounted, without a copy. Stores: ``https``, ``s3``, ``gs``, ``oci``, ``pvc``
(``ferryman.storage``; s3, gs and oci need the ``storage`` extra, which the operator
image carries). Credentials come from the environment (the Rollout's
``storage.secretName`` Secret, docs/artifacts.md).

On failure nothing is left in ``DIR``, and the initializer writes ONE line
``<Reason>: <message>`` (``storage.failure``) to ``--termination-log`` (default
``/dev/termination-log``, which the kubelet reports as the container's
``state.terminated.message``), prints it on stderr and exits 1. Exit 2: bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ferryman.storage import failure
from ferryman.storage.fetch import Options, fetch

TERMINATION_LOG = Path("/dev/termination-log")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ferryman.storage_init", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--uri", required=True, help="https, s3, gs, oci or pvc URI")
    p.add_argument("--digest", required=True, help="sha256:<64 hex> (file or tree digest)")
    p.add_argument("--dest", required=True, type=Path, help="the model volume")
    p.add_argument("--ca-file", default=None, help="CA bundle for https")
    p.add_argument("--pvc-root", default=Path("/mnt/pvc"), type=Path, help="claims' mounts")
    p.add_argument("--timeout", default=60.0, type=float, help="seconds per request")
    p.add_argument(
        "--plain-http",
        action="store_true",
        help="allow an OCI registry without TLS on a non-loopback host",
    )
    p.add_argument("--termination-log", default=TERMINATION_LOG, type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = Options(
        ca_file=args.ca_file,
        pvc_root=args.pvc_root,
        timeout=args.timeout,
        plain_http=args.plain_http,
    )
    try:
        path = fetch(args.uri, args.digest, args.dest, options)
    except failure.StorageError as e:
        line = failure.line(e)
        print(f"storage-initializer: {line}", file=sys.stderr)
        try:
            args.termination_log.write_text(line + "\n")
        except OSError as write_error:  # the kubelet falls back to the log tail
            print(f"storage-initializer: {write_error}", file=sys.stderr)
        return 1
    print(f"storage-initializer: {args.uri} -> {path} ({args.digest}) verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
