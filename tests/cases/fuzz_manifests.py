"""Hypothesis strategies for ModelVersion and Rollout manifests around the schema's edges
(issue 13 §3), for the admission fuzz (every manifest against the real API server) and
the reconcile fuzz (accepted manifests served by the real operator).

``model_version()`` and ``rollout()`` generate manifests the CRDs must accept: names and
labels at their longest and shortest, leading digits where allowed, numbers at their
bounds, every strategy and router combination the mirror rules allow, odd but valid
durations (``0.5s``, ``1h1h``, ``000ms``, many digits) and semvers (pre-release and build
metadata, up to the length bound), free text in any Unicode. ``case()`` adds mutations
aimed at one field (``fuzz_schema`` gives the bounds, the enums and what is required):
past a bound, a wrong type, an unknown or missing field, another charset, each with what
the API server must do (refuse, accept, or either) and the field a refusal must name.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from hypothesis import strategies as st

from cases import fuzz_schema as schema
from cases import fuzz_serving
from ferryman.api.serving_env import RESERVED_ENV

Manifest = dict[str, Any]
Expect = Literal["accept", "reject", "either"]
API_VERSION = "ferryman.dev/v1alpha1"

LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
ALNUM = LOWER + LOWER.upper() + DIGITS
MV, RO = "ModelVersion", "Rollout"


def _max(kind: str, path: str) -> int:
    return int(schema.bound(kind, path, "maxLength"))


@functools.cache
def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in [lo, hi], the bounds themselves drawn often."""
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))


@functools.cache
def bounded_int(kind: str, path: str) -> st.SearchStrategy[int]:
    node = schema.at(kind, path)
    return ints(int(node["minimum"]), int(node["maximum"]))


@functools.cache
def lengths(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, min(hi, lo + 20)))


# Any Unicode but surrogates (which JSON cannot carry as UTF-8).
ANY_CHAR = st.characters(codec="utf-8", exclude_categories=["Cs"])


@functools.cache
@st.composite
def text(draw: st.DrawFn, hi: int, lo: int = 0) -> str:
    """Free text of lo..hi characters: ASCII, any Unicode, or at the length bound."""
    n = draw(lengths(lo, hi))
    alphabet = draw(st.sampled_from(["ascii", "unicode", "wide"]))
    if alphabet == "wide":  # multi-byte: at the bound in characters, far past it in bytes
        return draw(st.sampled_from("é☃😀中")) * n
    chars = st.characters(min_codepoint=32, max_codepoint=126) if alphabet == "ascii" else ANY_CHAR
    if n <= 32:
        return draw(st.text(chars, min_size=n, max_size=n))
    # Long: a short random run repeated to the length (drawing thousands of characters
    # one by one costs more than the request it feeds).
    run = draw(st.text(chars, min_size=1, max_size=16))
    return (run * n)[:n]


@functools.cache
@st.composite
def label(draw: st.DrawFn, hi: int, first: str = LOWER + DIGITS) -> str:
    """A DNS label of 1..hi characters whose first character is from ``first``."""
    n = draw(lengths(1, hi))
    head = draw(st.sampled_from(first))
    if n == 1:
        return head
    middle = draw(st.text(LOWER + DIGITS + "-", min_size=n - 2, max_size=n - 2))
    return head + middle + draw(st.sampled_from(LOWER + DIGITS))


@functools.cache
def name(kind: str) -> st.SearchStrategy[str]:
    """A metadata.name the CRD accepts: a DNS-1035 label up to its root rule's bound."""
    return label(schema.name_max(kind), first=LOWER)


_NUMBER = st.one_of(st.sampled_from([0, 1, 10, 2**31 - 1]), st.integers(0, 999))
_NUMERIC_ID = _NUMBER.map(str)
_ALNUM_ID = st.text(ALNUM + "-", min_size=1, max_size=12).filter(lambda s: not s.isdigit())
_BUILD_ID = st.text(ALNUM + "-", min_size=1, max_size=12)


@functools.cache
@st.composite
def semver(draw: st.DrawFn, hi: int) -> str:
    """A semantic version (semver.org) of at most ``hi`` characters; often with a
    pre-release and build metadata, sometimes padded to exactly ``hi``."""
    core = ".".join(str(draw(_NUMBER)) for _ in range(3))
    pre = draw(st.lists(st.one_of(_NUMERIC_ID, _ALNUM_ID), max_size=4))
    build = draw(st.lists(_BUILD_ID, max_size=3))
    v = core + ("-" + ".".join(pre) if pre else "") + ("+" + ".".join(build) if build else "")
    if draw(st.booleans()) and len(v) < hi - 1:  # at the length bound
        v += ("." if build else "+") + "0" * (hi - len(v) - 1)
    return v[:hi] if len(v) <= hi else core


@functools.cache
@st.composite
def duration(draw: st.DrawFn, positive: bool = False) -> str:
    """A duration by the CRD's pattern: 1-3 parts of a number (leading zeros, a fraction,
    many digits) and a unit; with ``positive``, one with a non-zero digit."""
    units = schema.duration_units()
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        number = draw(
            st.one_of(
                st.sampled_from(["0", "1", "000", "0.5", "1.000", "30", "90"]),
                st.integers(0, 10**12).map(str),
                st.from_regex(r"[0-9]{1,4}\.[0-9]{1,6}", fullmatch=True),
            )
        )
        parts.append(number + draw(st.sampled_from(units)))
    d = "".join(parts)[: _max(RO, "spec.bake.duration")]
    if not re.fullmatch(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+", d) or (
        positive and not re.search("[1-9]", d)
    ):
        return "1s"
    return d


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@functools.cache
def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCHEMES = schema.uri_schemes()
IMAGES = st.sampled_from(
    ["ghcr.io/acme/onnx-server:2.5.0", "registry.local:5000/m", "x", "A/B:C", "ghcr.io/a@sha256:"]
)


@st.composite
def model_version(
    draw: st.DrawFn, model: str | None = None, version: str | None = None
) -> Manifest:
    """A ModelVersion the CRD accepts."""
    sp = "spec.serving"
    uri_max = _max(MV, "spec.artifact.uri")
    scheme = draw(st.sampled_from(SCHEMES))
    # RE2's '.' in the URI rule matches no newline: a URL has no line breaks anyway.
    uri = f"{scheme}://" + draw(label(63)) + "/" + draw(text(64)).replace("\n", "%0A")
    if draw(st.booleans()):
        uri += "x" * (uri_max - len(uri))  # at the bound
    serving = _compact(
        {
            # Without whitespace at either end (a Deployment refuses it, so the CRD does).
            "image": draw(
                st.one_of(
                    IMAGES, text(_max(MV, f"{sp}.image"), lo=1).map(lambda s: s.strip() or "x")
                )
            ),
            "port": draw(maybe(bounded_int(MV, f"{sp}.port"))),
            "command": draw(maybe(st.lists(text(64), max_size=3))),
            "args": draw(
                maybe(st.lists(text(64), max_size=int(schema.bound(MV, f"{sp}.args", "maxItems"))))
            ),
            "env": draw(
                maybe(
                    st.lists(
                        st.builds(
                            lambda n, v: {"name": n, "value": v},
                            st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True).filter(
                                lambda n: n not in RESERVED_ENV  # ferryman's own
                            ),
                            text(32),
                        ),
                        max_size=3,
                        unique_by=lambda e: e["name"],
                    )
                )
            ),
            "resources": draw(maybe(st.just({"requests": {"cpu": "10m", "memory": "16Mi"}}))),
            "readinessPath": draw(
                maybe(text(_max(MV, f"{sp}.readinessPath") - 1).map(lambda s: "/" + s))
            ),
        }
    )
    serving.update(draw(fuzz_serving.extras(serving)))  # ports, probes, volumes (issue 14)
    metrics = draw(
        maybe(
            st.dictionaries(
                label(20), FINITE, max_size=int(schema.bound(MV, "spec.metrics", "maxProperties"))
            )
        )
    )
    lineage = draw(
        maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    k: text(_max(MV, f"spec.lineage.{k}"))
                    for k in ("dataVersion", "codeCommit", "trainingRun", "parent")
                },
            )
        )
    )
    spec = _compact(
        {
            "model": model or draw(label(_max(MV, "spec.model"))),
            "version": version or draw(semver(_max(MV, "spec.version"))),
            "artifact": _compact(
                {
                    "uri": uri[:uri_max],
                    "digest": "sha256:"
                    + draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
                    "format": draw(maybe(text(_max(MV, "spec.artifact.format")))),
                }
            ),
            "serving": serving,
            "lineage": lineage,
            "metrics": metrics,
            "hyperparameters": draw(maybe(st.dictionaries(text(20, lo=1), text(40), max_size=4))),
            "signature": draw(maybe(st.just({"inputs": [{"name": "x", "dtype": "float32"}]}))),
            "owner": draw(maybe(text(_max(MV, "spec.owner")))),
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": MV,
        "metadata": {"name": draw(name(MV))},
        "spec": spec,
    }


def _steps(draw: st.DrawFn, path: str) -> list[dict[str, Any]]:
    hi = int(schema.bound(RO, path, "maxItems"))
    step = st.one_of(
        bounded_int(RO, f"{path}[].setWeight").map(lambda w: {"setWeight": w}),
        maybe(duration()).map(lambda d: {"pause": {"duration": d} if d else {}}),
    )
    return draw(st.lists(step, min_size=1, max_size=draw(st.sampled_from([3, hi]))))


ROUTERS = ("gatewayAPI", "istio", "service")
STRATEGIES = ("canary", "blueGreen", "shadow")
MIRRORING = ("gatewayAPI", "istio")
# Every (router, strategy) the CRD accepts: shadow needs a router that can mirror.
COMBINATIONS = tuple((r, s) for r in ROUTERS for s in STRATEGIES if s != "shadow" or r in MIRRORING)


@functools.cache
@st.composite
def _routing(draw: st.DrawFn, router: str) -> dict[str, Any]:
    p = "spec.trafficRouting"
    if router == "gatewayAPI":
        ref = st.builds(
            lambda n, ns, sec, port: _compact(
                {"name": n, "namespace": ns, "sectionName": sec, "port": port}
            ),
            label(63),
            maybe(label(63)),
            maybe(label(63)),
            maybe(bounded_int(RO, f"{p}.gatewayAPI.parentRefs[].port")),
        )
        hosts = st.lists(
            st.sampled_from(["", "*."]).flatmap(
                lambda w: label(30).map(lambda s: w + s + ".example")
            ),
            max_size=3,
        )
        # Distinct Gateways, or two listeners of one (the HTTPRoute's rule).
        refs = st.one_of(
            st.lists(ref, min_size=1, max_size=3, unique_by=lambda r: r["name"]),
            st.just([{"name": "g", "sectionName": "http"}, {"name": "g", "sectionName": "https"}]),
        )
        return {
            "gatewayAPI": _compact(
                {
                    "parentRefs": draw(refs),
                    "hostnames": draw(maybe(hosts)),
                }
            )
        }
    if router == "istio":
        hosts = st.lists(label(40).map(lambda s: s + ".svc"), min_size=1, max_size=3)
        return {
            "istio": _compact(
                {"hosts": draw(hosts), "gateways": draw(maybe(st.lists(label(30), max_size=2)))}
            )
        }
    return {"service": {}}


@functools.cache
@st.composite
def _strategy(draw: st.DrawFn, kind: str, router: str) -> dict[str, Any]:
    p = "spec.strategy"
    if kind == "canary":
        return {"canary": {"steps": _steps(draw, f"{p}.canary.steps")}}
    if kind == "blueGreen":
        mirror = bounded_int(RO, f"{p}.blueGreen.previewMirrorPercent")
        return {
            "blueGreen": _compact(
                {
                    "autoPromotionSeconds": draw(
                        maybe(bounded_int(RO, f"{p}.blueGreen.autoPromotionSeconds"))
                    ),
                    "previewMirrorPercent": draw(
                        maybe(mirror if router in MIRRORING else st.just(0))
                    ),
                }
            )
        }
    then = draw(st.sampled_from(schema.at(RO, f"{p}.shadow.then")["enum"]))
    steps = _steps(draw, f"{p}.shadow.steps") if then == "canary" or draw(st.booleans()) else None
    return {
        "shadow": _compact(
            {
                "mirrorPercent": draw(bounded_int(RO, f"{p}.shadow.mirrorPercent")),
                "duration": draw(duration()),
                "then": then,
                "steps": steps,
            }
        )
    }


VARIABLES = ("model", "version", "namespace", "workload", "stableVersion", "interval")


@st.composite
def _metric(draw: st.DrawFn, metric_name: str) -> dict[str, Any]:
    p = "spec.analysis.metrics[]"
    query = draw(
        st.one_of(
            st.sampled_from([f"rate(x{{v='{{{{{v}}}}}'}}[1m])" for v in VARIABLES]),
            text(_max(RO, f"{p}.query") - 1).map(lambda s: s + "q"),
        )
    )
    thresholds = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "min": FINITE,
                "max": FINITE,
                "maxIncreaseVsStable": st.floats(0, 1e9),
                "maxDropVsStable": st.floats(0, 1e9),
            },
        ).filter(bool)
    )
    return {"name": metric_name, "query": query, **thresholds}


@functools.cache
@st.composite
def _analysis(draw: st.DrawFn) -> dict[str, Any]:
    p = "spec.analysis"
    names_ = draw(
        st.lists(
            label(_max(RO, f"{p}.metrics[].name")),
            min_size=1,
            max_size=int(schema.bound(RO, f"{p}.metrics", "maxItems")),
            unique=True,
        )
    )
    source = draw(st.sampled_from(["provider", "address", "none"]))
    return _compact(
        {
            "provider": draw(st.sampled_from(["default", "p" * _max(RO, f"{p}.provider")]))
            if source == "provider"
            else None,
            "address": "http://127.0.0.1:9" if source == "address" else None,
            "interval": draw(maybe(duration(positive=True))),
            "failureLimit": draw(maybe(bounded_int(RO, f"{p}.failureLimit"))),
            "inconclusiveLimit": draw(maybe(bounded_int(RO, f"{p}.inconclusiveLimit"))),
            "consecutiveErrorLimit": draw(maybe(bounded_int(RO, f"{p}.consecutiveErrorLimit"))),
            "minSamples": draw(
                maybe(st.builds(lambda m: {"query": "count(x)", "min": m}, st.floats(0, 1e6)))
            ),
            "metrics": [draw(_metric(n)) for n in names_],
        }
    )


@st.composite
def rollout(
    draw: st.DrawFn,
    model: str | None = None,
    target: dict[str, Any] | None = None,
    combination: tuple[str, str] | None = None,
) -> Manifest:
    """A Rollout the CRD accepts: any router with any strategy it can carry out
    (``combination``: that (router, strategy), one of ``COMBINATIONS``)."""
    router, strategy = combination or draw(st.sampled_from(COMBINATIONS))
    if target is None:
        target = draw(
            st.one_of(
                semver(_max(RO, "spec.target.version")).map(lambda v: {"version": v}),
                st.builds(
                    lambda pre: _compact({"track": "latest", "includePrereleases": pre}),
                    maybe(st.booleans()),
                ),
            )
        )
    spec = _compact(
        {
            "model": model or draw(label(_max(RO, "spec.model"))),
            "target": target,
            "replicas": draw(maybe(bounded_int(RO, "spec.replicas"))),
            "template": draw(
                maybe(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "nodeSelector": st.dictionaries(label(20), label(20), max_size=2),
                            "tolerations": st.just([{"key": "k", "operator": "Exists"}]),
                            "serviceAccountName": label(63),
                            "imagePullSecrets": st.lists(
                                label(63).map(lambda n: {"name": n}), max_size=2
                            ),
                            "podAnnotations": st.dictionaries(label(30), text(64), max_size=2),
                        },
                    )
                )
            ),
            "storage": draw(maybe(label(63).map(lambda n: {"secretName": n}))),
            "service": draw(maybe(bounded_int(RO, "spec.service.port").map(lambda p: {"port": p}))),
            "trafficRouting": draw(_routing(router)),
            "strategy": draw(_strategy(strategy, router)),
            "gates": draw(
                maybe(
                    st.lists(
                        st.builds(
                            lambda n, lo: {"name": n, "min": lo},
                            text(_max(RO, "spec.gates.offlineMetrics[].name"), lo=1),
                            FINITE,
                        ),
                        max_size=3,
                    ).map(lambda g: {"offlineMetrics": g})
                )
            ),
            "analysis": draw(maybe(_analysis())),
            "bake": draw(maybe(duration().map(lambda d: {"duration": d}))),
            "scaleDownDelaySeconds": draw(maybe(bounded_int(RO, "spec.scaleDownDelaySeconds"))),
            "progressDeadlineSeconds": draw(maybe(bounded_int(RO, "spec.progressDeadlineSeconds"))),
            "historyLimit": draw(maybe(bounded_int(RO, "spec.historyLimit"))),
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": RO,
        "metadata": {"name": draw(name(RO))},
        "spec": spec,
    }


# --- mutations aimed at one field ----------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A manifest, what the API server must do with it, and (for a mutation) the field
    aimed at, whose name a refusal must carry."""

    manifest: Manifest
    expect: Expect
    path: str | None = None  # concrete: spec.strategy.canary.steps[2].setWeight
    mutation: str = "valid"


def _locations(node: Any, path: str, spath: str, kind: str) -> list[tuple[str, str, Any]]:
    """(concrete path, schema path, value) of every value under ``node``."""
    out = [(path, spath, node)]
    try:
        sch = schema.at(kind, spath)
    except KeyError:
        return out
    if isinstance(node, dict) and "properties" in sch:
        for k, v in node.items():
            if k in sch["properties"]:
                out += _locations(v, f"{path}.{k}", f"{spath}.{k}", kind)
    elif isinstance(node, list) and "items" in sch:
        for i, v in enumerate(node):
            out += _locations(v, f"{path}[{i}]", f"{spath}[]", kind)
    return out


def _set(manifest: Manifest, path: str, value: Any) -> None:
    parts: list[Any] = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node: Any = manifest
    for p in parts[:-1]:
        node = node[p]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


_DELETE = object()
_WRONG_TYPE = {
    "string": 12,
    "integer": "12",
    "number": "0.5",
    "boolean": "yes",
    "object": "x",
    "array": {"a": 1},
}


def _options(sch: schema.Schema, value: Any) -> list[str]:
    """The edges a field of schema ``sch`` (now ``value``) can be pushed to."""
    t = sch.get("type")
    options = ["wrong_type"]
    if t == "string":
        options += ["charset"]
        if "maxLength" in sch:
            options += ["too_long", "at_length"]
        if sch.get("minLength"):
            options += ["too_short"]
        if "enum" in sch:
            options += ["not_in_enum"]
    if t == "integer":
        options += ["fraction"]
    if t in ("integer", "number"):
        options += [o for o, k in (("above_max", "maximum"), ("below_min", "minimum")) if k in sch]
        options += [o for o, k in (("at_max", "maximum"), ("at_min", "minimum")) if k in sch]
    if t == "object" and "properties" in sch:
        options += ["unknown_field"]
        if any(k in value for k in sch.get("required", [])):
            options += ["drop_required"]
        if any(k not in sch.get("required", []) for k in value):
            options += ["drop_optional"]
    if t == "object" and "maxProperties" in sch:
        options += ["too_many_properties"]
    if t == "array":
        options += [
            o
            for o, k in (("too_many_items", "maxItems"), ("too_few_items", "minItems"))
            if sch.get(k)
        ]
    return options


@st.composite
def mutated(draw: st.DrawFn, base: Manifest) -> Case:
    """``base`` with one field pushed to or past an edge its schema states."""
    kind = base["kind"]
    m = copy.deepcopy(base)
    # The kind of edge first, then a field that has it: each kind gets its share, however
    # many fields of each type the manifest has.
    by_op: dict[str, list[tuple[str, str, Any]]] = {}
    for loc in _locations(m["spec"], "spec", "spec", kind):
        for option in _options(schema.at(kind, loc[1]), loc[2]):
            by_op.setdefault(option, []).append(loc)
    op = draw(st.sampled_from(sorted(by_op)))
    path, spath, value = draw(st.sampled_from(by_op[op]))
    sch = schema.at(kind, spath)
    t = sch.get("type")
    rules = bool(sch.get("x-kubernetes-validations"))
    expect: Expect = "reject"
    if op == "wrong_type":
        _set(m, path, _WRONG_TYPE[t or "object"])
    elif op == "charset":
        hi = sch.get("maxLength", 64)
        new = draw(
            st.one_of(
                text(hi),
                st.sampled_from(["", " ", "A", "a.b", "1a", "-a", "a-", "é", "a_b", "a/b"]),
            )
        )
        _set(m, path, new)
        expect = "either"
    elif op in ("too_long", "at_length"):
        hi = int(sch["maxLength"]) + (op == "too_long")
        _set(m, path, draw(st.sampled_from(["a", "0", "é", "中", "😀"])) * hi)
        expect = "reject" if op == "too_long" else "either" if rules or "enum" in sch else "accept"
    elif op == "too_short":
        _set(m, path, "")
    elif op == "not_in_enum":
        # Never a value the enum holds ("" is one of emptyDir.medium's: CI drew it).
        outside = [v for v in ("", "Latest", "LATEST", "promote ", "x") if v not in sch["enum"]]
        _set(m, path, draw(st.sampled_from(outside)))
    elif op == "fraction":
        _set(m, path, 0.5)
    elif op == "above_max":
        _set(m, path, sch["maximum"] + draw(st.sampled_from([1, 10**6])))
    elif op == "below_min":
        _set(m, path, sch["minimum"] - draw(st.sampled_from([1, 10**6])))
    elif op in ("at_max", "at_min"):
        _set(m, path, sch["maximum" if op == "at_max" else "minimum"])
        expect = "either"  # cross-field rules (mirroring over service) may still refuse
    elif op == "unknown_field":
        key = draw(st.sampled_from(["extra", "Model", "set_weight", "x-fuzz", "replica"]))
        if key in value:
            key += "2"
        value[key] = draw(st.sampled_from([1, "x", {}, None]))
        path = f"{path}.{key}"
        if value[key] is None:
            expect = "either"  # a null is dropped by the decoder
    elif op == "drop_required":
        key = draw(st.sampled_from([k for k in sch.get("required", []) if k in value]))
        del value[key]
        path = f"{path}.{key}"
    elif op == "drop_optional":
        key = draw(st.sampled_from([k for k in value if k not in sch.get("required", [])]))
        del value[key]
        path = f"{path}.{key}"
        expect = "either"  # "exactly one of" rules
    elif op == "too_many_properties":
        n = int(sch["maxProperties"]) + 1
        _set(m, path, {f"k{i}": "v" for i in range(n)})
    elif op == "too_many_items":
        n = int(sch["maxItems"]) + 1
        item = value[0] if value else "x"
        _set(m, path, [copy.deepcopy(item) for _ in range(n)])
    elif op == "too_few_items":
        _set(m, path, [])
    return Case(m, expect, path, op)


def _get(manifest: Manifest, path: str) -> Any:
    node: Any = manifest
    for p in re.findall(r"[^.\[\]]+", path):
        node = node[int(p) if p.isdigit() else p]
    return node


@st.composite
def case(draw: st.DrawFn) -> Case:
    """A valid manifest of either kind (accept), or one mutated at one field."""
    base = draw(st.one_of(model_version(), rollout()))
    # Mutations first: Hypothesis leans towards the first choice.
    how = draw(st.sampled_from(["mutate"] * 6 + ["valid"] * 3 + ["rename"]))
    if how == "valid":
        return Case(base, "accept")
    if how == "rename":
        return draw(renamed(base))
    return draw(mutated(base))


@st.composite
def renamed(draw: st.DrawFn, base: Manifest) -> Case:
    """``base`` under a name past the root rules' bound or in another charset."""
    m = copy.deepcopy(base)
    hi = schema.name_max(m["kind"])
    # Every one is refused: past the length bound, a dot, an uppercase letter, a leading
    # digit, a trailing '-'.
    m["metadata"]["name"] = draw(
        st.one_of(
            label(hi + 20, first=LOWER).filter(lambda n: len(n) > hi),
            st.sampled_from(["1abc", "a.b", "Abc", "ab-", "a" * 253]),
            label(hi, first=DIGITS),
        )
    )
    return Case(m, "reject", "metadata.name", "name")


@st.composite
def served(draw: st.DrawFn, combination: tuple[str, str] | None = None) -> list[Manifest]:
    """For the reconcile fuzz: a Rollout the CRD accepts (of ``combination``, see
    ``rollout``) and 0-2 ModelVersions of its model (its pinned target among them, or
    not)."""
    model = draw(label(_max(RO, "spec.model")))
    versions = draw(
        st.lists(
            semver(_max(MV, "spec.version")),
            min_size=draw(st.sampled_from([1, 0])),
            max_size=2,
            unique=True,
        )
    )
    # Mostly a target that exists: a Rollout with nothing to serve is Invalid at once.
    options = [st.sampled_from(versions).map(lambda v: {"version": v})] * 3 if versions else []
    target = draw(
        st.one_of(
            *options,
            st.builds(
                lambda p: _compact({"track": "latest", "includePrereleases": p}),
                maybe(st.booleans()),
            ),
            semver(_max(RO, "spec.target.version")).map(lambda v: {"version": v}),
        )
    )
    mvs = [draw(model_version(model=model, version=v)) for v in versions]
    return [*mvs, draw(rollout(model=model, target=target, combination=combination))]


# --- regressions -----------------------------------------------------------------------

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"


@dataclass(frozen=True)
class Regression:
    """A minimal manifest the fuzzer once failed on, kept and replayed every run
    (``tests/cases/fuzz_regressions/*.yaml``): ``admission`` says what the API server
    must do (``accept`` or ``reject``, naming ``path``); ``phase``, when set, the phase
    the operator must give the Rollout (the other manifests of the file are created
    first)."""

    name: str
    manifests: list[Manifest]
    admission: Expect
    path: str | None
    phase: str | None
    found: str


def regressions() -> list[Regression]:
    out = []
    for p in sorted(REGRESSIONS.glob("*.yaml")):
        doc = yaml.safe_load(p.read_text())
        out.append(
            Regression(
                name=p.stem,
                manifests=doc["manifests"],
                admission=doc["admission"],
                path=doc.get("path"),
                phase=doc.get("phase"),
                found=doc["found"],
            )
        )
    return out
