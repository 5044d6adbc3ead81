"""The chart's notification settings, rendered offline (``helm template``): endpoints reach
the settings file the operator loads, signing keys and credential URLs go to a Secret
and never to the ConfigMap, and the operator may read exactly those Secrets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from e2e.test_chart_render import validate_offline
from ferryman import settings as operator_settings
from harness.chart import CHART, find, helm, render, set_args

KEY = "k3y-0123456789abcdef"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXX"
VALUES: dict[str, Any] = {
    "settings": {
        "notifications": {
            "endpoints": {
                "team-slack": {"format": "slack", "secretUrl": SLACK_URL, "hmacKey": KEY},
                "audit": {
                    "url": "https://audit.example/hooks",
                    "secretName": "audit-hmac",
                    "timeoutSeconds": 3,
                },
                "plain": {"url": "https://ops.example/hook", "format": "teams"},
            },
            "retry": {"initialDelaySeconds": 1, "maxDelaySeconds": 60, "maxAttempts": 5},
        }
    }
}


def test_endpoints_reach_the_settings_and_secrets_stay_out_of_the_configmap(
    tmp_path: Path,
) -> None:
    docs = render(VALUES)
    (cm,) = find(docs, "ConfigMap", "ferryman-settings")
    text: str = cm["data"]["settings.yaml"]
    assert KEY not in text and "hooks.slack.com" not in text
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    loaded = operator_settings.load(path, environ={})
    endpoints = loaded.notifications.endpoints
    assert endpoints["team-slack"].format == "slack"
    assert endpoints["team-slack"].secret_name == "ferryman-notify-team-slack"
    assert endpoints["team-slack"].url is None
    assert (endpoints["audit"].secret_name, endpoints["audit"].timeout_seconds) == ("audit-hmac", 3)
    assert (endpoints["plain"].format, endpoints["plain"].secret_name) == ("teams", None)
    # hmacKey given: never sent unsigned; a Secret named without signed may hold a URL only
    assert (endpoints["team-slack"].signed, endpoints["audit"].signed) == (True, False)
    assert loaded.notifications.retry.max_attempts == 5

    (secret,) = find(docs, "Secret")
    assert secret["metadata"]["name"] == "ferryman-notify-team-slack"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"hmacKey": KEY, "url": SLACK_URL}

    (role,) = find(docs, "Role", "ferryman-provider-secrets")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["audit-hmac", "ferryman-notify-team-slack"],
            "verbs": ["get"],
        }
    ]
    assert "Secret" in validate_offline(docs)
    # Without endpoints: no Secret, and no Secret may be read.
    plain = render()
    assert find(plain, "Secret") == [] and find(plain, "Role", "ferryman-provider-secrets") == []


@pytest.mark.parametrize(
    ("endpoint", "where"),
    [
        ({"format": "slack"}, "/endpoints/e': 'anyOf' failed"),  # no address at all
        ({"url": "ftp://x.example/"}, "/endpoints/e/url'"),
        ({"url": "https://x.example/", "format": "email"}, "/endpoints/e/format'"),
        ({"url": "https://x.example/", "hmacKey": "short"}, "/endpoints/e/hmacKey'"),
        ({"url": "https://x.example/", "token": "x"}, "additional properties 'token'"),
    ],
)
def test_schema_refuses_bad_endpoints_naming_the_field(
    endpoint: dict[str, Any], where: str
) -> None:
    values = {"settings": {"notifications": {"endpoints": {"e": endpoint}}}}
    proc = helm("template", "ferryman", str(CHART), *set_args(values), check=False)
    assert proc.returncode != 0, endpoint
    assert where in proc.stderr, proc.stderr
