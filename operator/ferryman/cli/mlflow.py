"""``kubectl ferryman import mlflow MODEL VERSION|@ALIAS``: a registered MLflow model
version becomes a ModelVersion (docs/mlflow.md).

This module is the I/O of the import: it reads MLflow's REST API (API 2.0, plain HTTP
with the standard library: no MLflow package is needed) and, when the model version
has no ``ferryman.digest`` tag, the artifact's files to compute their digest; the
mapping itself is ``ferryman.plan.mlflow`` (pure). Endpoints used:

- ``GET /api/2.0/mlflow/model-versions/get`` (a version) or
  ``GET /api/2.0/mlflow/registered-models/alias`` (``@champion``);
- ``GET /api/2.0/mlflow/model-versions/get-download-uri``: where the files are;
- ``GET /api/2.0/mlflow/runs/get``: metrics, params, tags, dataset inputs;
- ``GET /api/2.0/mlflow-artifacts/artifacts?path=`` (list) and
  ``GET /api/2.0/mlflow-artifacts/artifacts/<path>`` (download), for a location
  ``mlflow-artifacts:/...`` (a tracking server that serves its artifacts).

Credentials come from MLflow's own variables: ``MLFLOW_TRACKING_TOKEN`` (bearer) or
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic). A file location
(``file:`` or a path) is read from the local disk; s3, gs, https and oci with the
storage initializer's own code and credentials (``ferryman.storage.fetch.digest``).

The ModelVersion is created with the Kubernetes API (or printed with ``-o yaml``, for a
GitOps repository); an existing one of the same model and version with the same artifact
is left as it is (exit 0), one with another artifact refuses the import (exit 1).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from ferryman import errors
from ferryman.plan import mlflow
from ferryman.storage import failure
from ferryman.storage.failure import StorageError

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MAX_FILES = 10_000
CHUNK = 1 << 20


class MlflowError(Exception):
    """The tracking server could not be read, or answered an error: one line."""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``import mlflow`` on the plugin's subcommand parsers ``sub``."""
    imp = sub.add_parser("import", parents=parents, help="register a model from a registry")
    kinds = imp.add_subparsers(dest="registry", required=True, metavar="REGISTRY")
    m = kinds.add_parser(
        "mlflow",
        parents=parents,
        help="a registered MLflow model version as a ModelVersion",
        description=(__doc__ or "").split("\n\n")[0],
    )
    m.add_argument("model", help="the registered model's name in MLflow")
    m.add_argument("version", metavar="VERSION|@ALIAS", help="a version number, or @alias")
    m.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="http(s) URL of the tracking server (default $MLFLOW_TRACKING_URI)",
    )
    m.add_argument("--image", help="serving.image: the model server image")
    m.add_argument("--port", type=int, default=None, help="serving.port (default 8080)")
    m.add_argument(
        "--serving-file", type=Path, help="YAML of the whole serving block (--image overrides)"
    )
    m.add_argument(
        "--artifact-map",
        action="append",
        default=[],
        metavar="PREFIX=URI",
        help="serve MLflow locations under PREFIX from URI (repeatable; longest prefix wins), "
        "e.g. mlflow-artifacts:/=s3://mlflow-artifacts/",
    )
    m.add_argument("--model-name", help="spec.model (default: derived from MODEL)")
    m.add_argument("--format", default="mlflow", help="artifact.format (default mlflow)")
    m.add_argument(
        "--metric", action="append", default=None, help="keep only these metrics (repeatable)"
    )
    m.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    m.add_argument(
        "-o", "--output", choices=["yaml"], help="print the ModelVersion instead of creating it"
    )
    m.add_argument("--pvc-root", default=Path("/mnt/pvc"), type=Path, help="claims' mounts")
    m.add_argument(
        "--follow",
        action="store_true",
        help="with @ALIAS: keep resolving the alias and import each version it points to",
    )
    m.add_argument(
        "--interval", type=float, default=60.0, help="with --follow: seconds between looks"
    )
    m.add_argument(
        "--polls",
        type=int,
        default=0,
        help="with --follow: stop after this many looks (default 0: until interrupted)",
    )


class Client:
    """MLflow's REST API over HTTP(S) with the standard library."""

    def __init__(self, tracking_uri: str, timeout: float) -> None:
        parsed = urllib.parse.urlparse(tracking_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise MlflowError(f"--tracking-uri {tracking_uri!r}: expected http(s)://host[:port]")
        self.base = tracking_uri.rstrip("/")
        self.timeout = timeout
        self.headers = {"User-Agent": "kubectl-ferryman"}
        if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
            self.headers["Authorization"] = f"Bearer {token}"
        elif user := os.environ.get("MLFLOW_TRACKING_USERNAME"):
            pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    def _open(self, path: str, query: dict[str, str] | None = None) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers=self.headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("message") or detail
            raise MlflowError(f"{path}: HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise MlflowError(f"cannot reach the tracking server {self.base}: {e}") from e

    def get(self, endpoint: str, **query: str) -> dict[str, Any]:
        with self._open(endpoint, query) as resp:
            out: dict[str, Any] = json.load(resp)
            return out

    def version(self, name: str, version: str) -> dict[str, Any]:
        """The model version ``version``, or ``@alias``'s."""
        if version.startswith("@"):
            got = self.get(f"{API}/registered-models/alias", name=name, alias=version[1:])
        else:
            got = self.get(f"{API}/model-versions/get", name=name, version=version)
        mv: dict[str, Any] = got["model_version"]
        return mv

    def download_uri(self, name: str, version: str) -> str:
        got = self.get(f"{API}/model-versions/get-download-uri", name=name, version=version)
        return str(got["artifact_uri"])

    def run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.get(f"{API}/runs/get", run_id=run_id)["run"]
        return run

    def proxied_files(self, root: str) -> Iterator[str]:
        """Relative paths of the files under ``root`` (an mlflow-artifacts path); at
        most MAX_FILES entries (files and directories) are listed, else MlflowError."""
        pending, seen = [""], 0
        while pending:
            rel = pending.pop()
            listed = self.get(ARTIFACTS, path=f"{root}/{rel}".strip("/")).get("files") or []
            for f in listed:
                seen += 1
                if seen > MAX_FILES:
                    raise MlflowError(f"more than {MAX_FILES} entries under {root}")
                child = f"{rel}/{f['path'].rsplit('/', 1)[-1]}".strip("/")
                if f.get("is_dir"):
                    pending.append(child)
                else:
                    yield child

    def proxied_sha256(self, path: str) -> str:
        sha = hashlib.sha256()
        with self._open(f"{ARTIFACTS}/{urllib.parse.quote(path)}") as resp:
            while chunk := resp.read(CHUNK):
                sha.update(chunk)
        return sha.hexdigest()


def artifact_digest(client: Client, location: str, args: argparse.Namespace) -> str:
    """The digest of the files at MLflow's storage ``location`` (``ferryman.storage.tree``:
    a directory's manifest digest, a file's sha256)."""
    from ferryman.storage import fetch, tree

    location = mlflow.normalize_location(location)
    if location.startswith("mlflow-artifacts:"):
        root = location.removeprefix("mlflow-artifacts:").strip("/")
        files = sorted(client.proxied_files(root))
        if not files:  # a single file, or nothing there
            return tree.PREFIX + client.proxied_sha256(root)
        return tree.tree_digest((f, client.proxied_sha256(f"{root}/{f}")) for f in files)
    if location.startswith("file:") or location.startswith("/"):
        path = urllib.parse.unquote(urllib.parse.urlparse(location).path)
        return tree.digest_path(Path(path))
    options = fetch.Options(pvc_root=args.pvc_root, timeout=args.timeout)
    return fetch.digest(location, options)


def serving_block(args: argparse.Namespace) -> dict[str, Any]:
    serving: dict[str, Any] = {}
    if args.serving_file is not None:
        loaded = yaml.safe_load(args.serving_file.read_text())
        if not isinstance(loaded, dict):
            raise mlflow.Refused(f"{args.serving_file}: expected a YAML mapping (spec.serving)")
        serving = loaded
    if args.image:
        serving["image"] = args.image
    if args.port is not None:
        serving["port"] = args.port
    if not serving.get("image"):
        raise mlflow.Refused("give the model server image: --image IMAGE or --serving-file")
    return serving


def build(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    """The ModelVersion for the command line's model version (I/O: MLflow only)."""
    if not args.tracking_uri:
        raise MlflowError("--tracking-uri (or $MLFLOW_TRACKING_URI) is required")
    serving = serving_block(args)
    maps = [mlflow.parse_map(m) for m in args.artifact_map]
    client = Client(args.tracking_uri, args.timeout)
    version = mlflow.RegistryVersion.from_json(client.version(args.model, args.version))
    location = client.download_uri(version.name, version.version)
    uri = mlflow.serving_uri(location, maps)
    run = mlflow.Run.from_json(client.run(version.run_id)) if version.run_id else None
    mlflow.lineage(run, version.run_id)  # refuses a partial DVC record before any download
    digest = mlflow.tagged_digest(version)
    if digest is None:
        say(f"computing the digest of {location} ...")
        try:
            digest = artifact_digest(client, location, args)
        except StorageError as e:
            raise MlflowError(f"artifact {location}: {failure.line(e)}") from e
    alias = args.version[1:] if args.version.startswith("@") else None
    return mlflow.manifest(
        version=version,
        run=run,
        location=location,
        uri=uri,
        digest=digest,
        serving=serving,
        tracking_uri=args.tracking_uri,
        model=args.model_name,
        artifact_format=args.format or None,
        alias=alias,
        metrics=args.metric,
    )


def follow(
    args: argparse.Namespace,
    once: Callable[[], int],
    resolve: Callable[[], str],
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """``--follow``: look up the alias every ``args.interval`` seconds (``resolve``: the
    version it points to) and run ``once`` (one import) whenever that version changed,
    ``args.polls`` times (0: until interrupted). A failed look or import is reported and
    the next look tries again (a refused version is tried again only after the alias
    moved away and back). Returns 1 if the last import failed, else 0."""
    if not args.version.startswith("@"):
        raise mlflow.Refused("--follow needs an alias (@champion), not a version number")
    last: str | None = None
    code, polls = 0, 0
    while args.polls <= 0 or polls < args.polls:
        polls += 1
        try:
            current = resolve()
            if current != last:
                say(f"alias {args.version} -> version {current}")
                last = current
                code = once()
        except Exception as e:  # one look's failure (MLflow, the API server) is not the last
            say(f"error: {errors.describe(e)}")
            code = 1
        if args.polls <= 0 or polls < args.polls:
            try:
                sleep(args.interval)
            except KeyboardInterrupt:  # Ctrl-C between looks: a normal end
                break
    return code


def run_import(
    args: argparse.Namespace,
    list_present: Callable[[], list[dict[str, Any]]],
    create: Callable[[dict[str, Any]], bool],
    say: Callable[[str], None],
) -> int:
    """Build, compare with what the namespace holds, create when new (``create`` says
    False when a concurrent import created the same one first). Raises Refused or
    MlflowError (exit 1), or the Kubernetes client's errors."""
    if args.follow:
        if not args.tracking_uri:
            raise MlflowError("--tracking-uri (or $MLFLOW_TRACKING_URI) is required")
        client = Client(args.tracking_uri, args.timeout)
        args.follow = False  # each look is one plain import

        def resolve() -> str:
            return str(client.version(args.model, args.version)["version"])

        return follow(args, lambda: run_import(args, list_present, create, say), resolve, say)
    mv = build(args, lambda line: print(line, file=sys.stderr, flush=True))
    if args.output == "yaml":
        say(yaml.safe_dump(mv, sort_keys=False).rstrip())
        return 0
    decided = mlflow.verdict(mv, list_present())
    name = mv["metadata"]["name"]
    spec = mv["spec"]
    if decided.create and create(mv):
        say(
            f"modelversion.ferryman.dev/{name} created (model {spec['model']} version "
            f"{spec['version']}, {spec['artifact']['digest']})"
        )
        return 0
    if decided.create:  # lost a race to an identical import
        decided = mlflow.verdict(mv, list_present())
    more = f"; kept as first imported: {', '.join(decided.differences)} differ" * bool(
        decided.differences
    )
    say(f"modelversion.ferryman.dev/{decided.existing} unchanged (same artifact{more})")
    return 0
