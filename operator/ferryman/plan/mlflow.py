"""An MLflow registry record as a ModelVersion, as pure functions (docs/mlflow.md).

``kubectl ferryman import mlflow`` reads a registered model version and its training run
through MLflow's REST API (``ferryman.cli.mlflow``: the I/O) and hands the JSON it got to
this module, which decides everything else without I/O, so every rule is unit-tested:

- names: the ModelVersion's ``spec.model`` is the registered model's name when that is a
  DNS-1123 label, else a readable prefix and a hash of the whole name (distinct names
  stay distinct); MLflow's version ``N`` (a positive integer) is the semver ``N.0.0``; the
  object's name is ``<model>-N-0-0`` (hashed too when it would not be a valid name);
- the artifact: MLflow's storage location (``get-download-uri``) mapped by the longest
  matching ``--artifact-map PREFIX=URI`` to a URI the storage initializer reads, or kept
  when it already has such a scheme (s3, gs, https, oci); the digest is the model
  version's tag ``ferryman.digest`` when set, else the one the caller computed over the
  artifact's files (``ferryman.storage.tree``);
- lineage: ``trainingRun`` ``mlflow://runs/<run id>``, ``codeCommit`` the run's tag
  ``mlflow.source.git.commit``, ``data.datasets`` its dataset inputs, ``data.dvc`` its
  tags (or params) ``dvc.repo``, ``dvc.rev``, ``dvc.path``, ``dvc.md5`` (all four or
  none), ``dataVersion`` a label from the first dataset or the DVC path and md5;
- metrics and hyperparameters: the run's latest metric values (finite ones) and its
  params other than ``dvc.*``;
- re-import: an existing ModelVersion of the same model and version with the same
  artifact (uri and digest) is kept as it is; with another artifact the import is
  refused, as the operator would mark a second claim ``Duplicate`` and never serve it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ferryman.api import names
from ferryman.api.common import API_VERSION, DNS_LABEL
from ferryman.api.modelversion import (
    DIGEST_PATTERN,
    DVC_MD5_PATTERN,
    KIND,
    MAX_DATASETS,
    URI_SCHEMES,
)

TAG_DIGEST = "ferryman.digest"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
DVC_KEYS = ("repo", "rev", "path", "md5")
DVC_PREFIX = "dvc."
MAX_METRICS = 64
MAX_PARAMS = 128
MAX_PARAM_VALUE = 4096
HASH_LENGTH = 10
# Schemes the storage initializer reads without a mapping (pvc:// needs one: MLflow
# never names a claim).
DIRECT_SCHEMES = tuple(s for s in URI_SCHEMES if s != "pvc")

ANNOTATION_PREFIX = "mlflow.ferryman.dev"
ANNOTATION_TRACKING_URI = f"{ANNOTATION_PREFIX}/tracking-uri"
ANNOTATION_MODEL = f"{ANNOTATION_PREFIX}/registered-model"
ANNOTATION_VERSION = f"{ANNOTATION_PREFIX}/version"
ANNOTATION_LOCATION = f"{ANNOTATION_PREFIX}/storage-location"
ANNOTATION_ALIAS = f"{ANNOTATION_PREFIX}/imported-as-alias"


class Refused(Exception):
    """The record cannot become a ModelVersion (or this one): the message says why."""


def key_values(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """MLflow's ``[{key, value}]`` lists (tags, params) as a dict; a later key wins."""
    return {str(i["key"]): str(i.get("value", "")) for i in items or [] if "key" in i}


@dataclass(frozen=True)
class RegistryVersion:
    """A registered model version (REST ``model_version``)."""

    name: str
    version: str
    run_id: str | None
    source: str | None
    tags: dict[str, str]
    user_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RegistryVersion:
        return cls(
            name=str(obj["name"]),
            version=str(obj["version"]),
            run_id=obj.get("run_id") or None,
            source=obj.get("source") or None,
            tags=key_values(obj.get("tags")),
            user_id=obj.get("user_id") or None,
        )


@dataclass(frozen=True)
class Run:
    """A training run (REST ``run``): latest metric values, params, tags, datasets."""

    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    datasets: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Run:
        data = obj.get("data") or {}
        latest: dict[str, tuple[int, int, float]] = {}
        for m in data.get("metrics") or []:
            # runs/get returns each metric's latest value; keep the newest if repeated.
            at = (int(m.get("step") or 0), int(m.get("timestamp") or 0))
            if m["key"] not in latest or at >= latest[m["key"]][:2]:
                latest[m["key"]] = (*at, float(m["value"]))
        datasets = []
        for d in (obj.get("inputs") or {}).get("dataset_inputs") or []:
            ds = d.get("dataset") or {}
            entry = {
                "name": str(ds.get("name") or ""),
                "digest": str(ds.get("digest") or ""),
                "sourceType": str(ds.get("source_type") or ""),
                "source": _dataset_source(str(ds.get("source") or "")),
                "context": key_values(d.get("tags")).get("mlflow.data.context", ""),
            }
            datasets.append({k: v for k, v in entry.items() if v})
        return cls(
            run_id=str((obj.get("info") or {})["run_id"]),
            metrics={k: v[2] for k, v in sorted(latest.items())},
            params=key_values(data.get("params")),
            tags=key_values(data.get("tags")),
            datasets=[d for d in datasets if d.get("name")],
        )


def _dataset_source(source: str) -> str:
    """MLflow stores a dataset's source as JSON (``{"uri": "s3://..."}``): its URI, else
    the text as it is; at most 1,024 characters."""
    try:
        parsed = json.loads(source)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("uri", "url", "path", "table_name"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])[:1024]
    return source[:1024]


def _hashed(text: str, limit: int) -> str:
    """A DNS-1123 label for ``text``: its sanitized prefix, ``-`` and a hash of it."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]
    prefix = re.sub(r"[^a-z0-9]+", "-", text.lower())[: limit - HASH_LENGTH - 1].strip("-")
    return f"{prefix}-{digest}" if prefix else digest


def model_name(registered: str) -> str:
    """``spec.model`` for a registered model: the name itself when it is a DNS-1123
    label of at most 63 characters, else (``Fraud Detector``, ``team.fraud_v2``) its
    lowercase sanitized prefix, ``-`` and the first 10 hex digits of the sha256 of the
    name, so two names never share a model."""
    if len(registered) <= 63 and re.match(DNS_LABEL, registered):
        return registered
    return _hashed(registered, 63)


def semver_of(version: str) -> str:
    """MLflow's version number ``N`` as the semver ``N.0.0``; raises Refused otherwise."""
    if not version.isdigit() or version.startswith("0"):
        raise Refused(f"MLflow version {version!r} is not a positive integer")
    return f"{version}.0.0"


def object_name(model: str, semver: str) -> str:
    """The ModelVersion's ``metadata.name``: ``<model>-<semver with - for .>``
    (``fraud-3-0-0``) when that is a valid name, else a hashed form of it that is."""
    plain = f"{model}-{semver.replace('.', '-')}"
    if names.problem(names.MODEL_VERSION, plain) is None:
        return plain
    hashed = _hashed(plain, names.MODEL_VERSION_NAME_MAX)
    return hashed if hashed[0].isalpha() else _hashed("mv-" + plain, names.MODEL_VERSION_NAME_MAX)


def parse_map(text: str) -> tuple[str, str]:
    """``PREFIX=URI`` of ``--artifact-map``; raises Refused when malformed."""
    prefix, sep, uri = text.partition("=")
    if not sep or not prefix or not uri:
        raise Refused(f"--artifact-map {text!r}: expected PREFIX=URI")
    return prefix, uri


def normalize_location(location: str) -> str:
    """``mlflow-artifacts://host:port/x`` as ``mlflow-artifacts:/x`` (the host is the
    tracking server's, not part of where the files are); other locations unchanged."""
    m = re.match(r"^mlflow-artifacts://[^/]*(/.*)$", location)
    return f"mlflow-artifacts:{m.group(1)}" if m else location


def serving_uri(location: str, maps: Sequence[tuple[str, str]]) -> str:
    """The URI the storage initializer reads for MLflow's storage ``location``: the
    longest matching map prefix replaced by its URI; else ``location`` itself when its
    scheme is s3, gs, https or oci. Raises Refused for anything else (a local path,
    ``file:``, ``mlflow-artifacts:`` without a map)."""
    location = normalize_location(location)
    matching = [(p, u) for p, u in maps if location.startswith(normalize_location(p))]
    if matching:
        prefix, uri = max(matching, key=lambda m: len(normalize_location(m[0])))
        rest = location[len(normalize_location(prefix)) :]
        uri = uri.rstrip("/") + "/" + rest.lstrip("/") if rest else uri
    else:
        uri = location
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in URI_SCHEMES:
        raise Refused(
            f"artifact location {location!r} is not readable by the storage initializer "
            f"(schemes {', '.join(URI_SCHEMES)}): map it with --artifact-map PREFIX=URI, "
            "e.g. --artifact-map mlflow-artifacts:/=s3://mlflow-artifacts/ (docs/mlflow.md)"
        )
    if not maps and scheme not in DIRECT_SCHEMES:
        raise Refused(f"artifact location {location!r} needs --artifact-map")
    return uri


def tagged_digest(version: RegistryVersion) -> str | None:
    """The model version's ``ferryman.digest`` tag, checked; None when absent."""
    value = version.tags.get(TAG_DIGEST)
    if value is None:
        return None
    if not re.match(DIGEST_PATTERN, value):
        raise Refused(f"tag {TAG_DIGEST}={value[:80]!r} is not sha256:<64 lowercase hex>")
    return value


def dvc_lineage(run: Run) -> dict[str, str] | None:
    """``lineage.data.dvc`` from the run's ``dvc.*`` tags (or params, a tag wins): all
    four keys or none; raises Refused for a partial or malformed record."""
    found = {k: run.tags.get(DVC_PREFIX + k) or run.params.get(DVC_PREFIX + k) for k in DVC_KEYS}
    present = {k: v for k, v in found.items() if v}
    if not present:
        return None
    missing = [DVC_PREFIX + k for k in DVC_KEYS if k not in present]
    if missing:
        raise Refused(f"run {run.run_id} logged DVC lineage without {', '.join(missing)}")
    if not re.match(DVC_MD5_PATTERN, present["md5"]):
        raise Refused(f"run {run.run_id}: dvc.md5 {present['md5'][:80]!r} is not a DVC md5")
    return present


def _metrics(run: Run) -> dict[str, float]:
    finite = {k: v for k, v in run.metrics.items() if math.isfinite(v)}
    if len(finite) > MAX_METRICS:
        raise Refused(
            f"run {run.run_id} has {len(finite)} metrics, a ModelVersion keeps at most "
            f"{MAX_METRICS}: choose them with --metric NAME"
        )
    return finite


def _params(run: Run) -> dict[str, str]:
    kept = {k: v for k, v in run.params.items() if not k.startswith(DVC_PREFIX)}
    if len(kept) > MAX_PARAMS:
        raise Refused(f"run {run.run_id} has {len(kept)} params, at most {MAX_PARAMS} are kept")
    too_long = [k for k, v in kept.items() if len(v) > MAX_PARAM_VALUE]
    if too_long:
        raise Refused(f"run {run.run_id}: params longer than {MAX_PARAM_VALUE}: {too_long[:5]}")
    return kept


def lineage(run: Run | None, run_id: str | None) -> dict[str, Any]:
    """``spec.lineage`` of an imported version (module docstring)."""
    out: dict[str, Any] = {}
    if run_id:
        out["trainingRun"] = f"mlflow://runs/{run_id}"
    if run is None:
        return out
    if commit := run.tags.get(TAG_GIT_COMMIT):
        out["codeCommit"] = commit[:128]
    data: dict[str, Any] = {}
    if run.datasets:
        if len(run.datasets) > MAX_DATASETS:
            raise Refused(f"run {run.run_id} logged {len(run.datasets)} datasets, at most 16")
        data["datasets"] = run.datasets
    dvc = dvc_lineage(run)
    if dvc:
        data["dvc"] = dvc
    if data:
        out["data"] = data
    if run.datasets:
        first = run.datasets[0]
        label = first["name"] + (f"@{first['digest']}" if first.get("digest") else "")
        out["dataVersion"] = label[:256]
    elif dvc:
        out["dataVersion"] = f"{dvc['path']}@{dvc['md5'][:12]}"[:256]
    return out


def manifest(
    *,
    version: RegistryVersion,
    run: Run | None,
    location: str,
    uri: str,
    digest: str,
    serving: Mapping[str, Any],
    tracking_uri: str,
    model: str | None = None,
    artifact_format: str | None = "mlflow",
    alias: str | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The ModelVersion for ``version`` (module docstring). ``location`` is MLflow's
    storage location, ``uri`` what serves it (``serving_uri``), ``serving`` the
    ``spec.serving`` block, ``model`` an override of ``spec.model``, ``metrics`` the
    names to keep (default all). Raises Refused."""
    if not re.match(DIGEST_PATTERN, digest):
        raise Refused(f"digest {digest[:80]!r} is not sha256:<64 lowercase hex>")
    semver = semver_of(version.version)
    model = model or model_name(version.name)
    if not re.match(DNS_LABEL, model) or len(model) > 63:
        raise Refused(f"--model {model!r} must be a DNS-1123 label")
    spec: dict[str, Any] = {
        "model": model,
        "version": semver,
        "artifact": {"uri": uri, "digest": digest},
        "serving": dict(serving),
    }
    if artifact_format:
        spec["artifact"]["format"] = artifact_format
    lin = lineage(run, version.run_id)
    if lin:
        spec["lineage"] = lin
    if run is not None:
        found = _metrics(
            Run(run.run_id, {k: v for k, v in run.metrics.items() if k in metrics}, {}, {})
            if metrics
            else run
        )
        if found:
            spec["metrics"] = found
        if params := _params(run):
            spec["hyperparameters"] = params
    if version.user_id:
        spec["owner"] = version.user_id[:256]
    annotations = {
        ANNOTATION_TRACKING_URI: tracking_uri,
        ANNOTATION_MODEL: version.name,
        ANNOTATION_VERSION: version.version,
        ANNOTATION_LOCATION: location,
    }
    if alias:
        annotations[ANNOTATION_ALIAS] = alias
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": object_name(model, semver), "annotations": annotations},
        "spec": spec,
    }


@dataclass(frozen=True)
class Verdict:
    """What to do with a new ModelVersion given those already there: ``create``, or
    keep ``existing`` (``differences`` lists the spec fields that differ besides the
    artifact: an immutable record keeps what was imported first)."""

    create: bool
    existing: str | None = None
    differences: tuple[str, ...] = ()


def verdict(new: Mapping[str, Any], present: Iterable[Mapping[str, Any]]) -> Verdict:
    """Compare ``new`` with the ModelVersions ``present`` in its namespace. Same model and
    version with the same artifact uri and digest: keep it (re-import is a no-op); with
    another artifact: raises Refused; none: create."""
    spec = new["spec"]
    same = [
        p
        for p in present
        if (p.get("spec") or {}).get("model") == spec["model"]
        and (p.get("spec") or {}).get("version") == spec["version"]
    ]
    # The one the operator registers (the oldest; ties by name): a later one would be
    # a Duplicate.
    same.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
    if not same:
        return Verdict(create=True)
    old = same[0]
    old_art, new_art = old["spec"].get("artifact") or {}, spec["artifact"]
    name = old["metadata"]["name"]
    if (old_art.get("uri"), old_art.get("digest")) != (new_art["uri"], new_art["digest"]):
        raise Refused(
            f"model {spec['model']} version {spec['version']} is already registered by "
            f"ModelVersion {name} with artifact {old_art.get('uri')} "
            f"{old_art.get('digest')}; MLflow now has {new_art['uri']} {new_art['digest']}: "
            "a ModelVersion is immutable and a second one would be a Duplicate, never "
            "served; register the changed model as a new MLflow version"
        )
    differences = tuple(
        sorted(k for k in set(spec) | set(old["spec"]) if spec.get(k) != old["spec"].get(k))
    )
    return Verdict(create=False, existing=name, differences=differences)
