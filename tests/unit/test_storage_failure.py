"""The initializer's one termination line: ``<Reason>: <message>``, one line, bounded,
with no credential in it (the contract with the operator's Pod watch)."""

from __future__ import annotations

from ferryman.storage.failure import MAX_LINE, Reason, StorageError, has_status, line, words


def test_one_line_with_the_reason_first() -> None:
    error = StorageError(Reason.NOT_FOUND, "no object\nor prefix   s3://b/k")
    assert line(error, {}) == "NotFound: no object or prefix s3://b/k"


def test_credentials_and_url_userinfo_are_removed() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "OCI_PASSWORD": "hunter22"}
    error = StorageError(
        Reason.ACCESS_DENIED,
        "signature wJalrXUtnFEMI refused; https://bob:hunter22@host/m.onnx; hunter22",
    )
    text = line(error, env)
    assert "wJalrXUtnFEMI" not in text and "hunter22" not in text and "bob" not in text
    assert text.startswith("AccessDenied: signature <AWS_SECRET_ACCESS_KEY> refused")


def test_a_long_message_is_cut_to_the_bound_on_a_character_boundary() -> None:
    text = line(StorageError(Reason.TRUNCATED, "é" * 2000), {})
    assert len(text.encode()) <= MAX_LINE and text.endswith("...")
    text.encode().decode()  # valid UTF-8


def test_a_status_code_is_a_number_of_its_own_never_part_of_a_url() -> None:
    """CI saw a registry on port 38401 answer a missing manifest "Not Found" and the
    initializer report AccessDenied: "401" was found inside the URL. Every store's
    classification reads status codes and words outside URLs."""
    from ferryman.storage import oci, s3

    url = "http://127.0.0.1:38401/v2/models/absent/manifests/1.3.0"
    assert not has_status(f"Issue with {url}: Not Found", 401, 403)
    assert has_status("Issue with x: 401 Unauthorized", 401)
    assert has_status("status 403 Forbidden", 403) and not has_status("port 54033", 403)
    assert words(f"got {url}/denied: Not Found") == "got   not found"
    missing = oci._error(ValueError(f"Issue with {url}: Not Found"), "oci://r/m:1")
    assert missing.reason is Reason.NOT_FOUND, missing
    denied = oci._error(ValueError(f"Issue with {url}: 401 Unauthorized"), "oci://r/m:1")
    assert denied.reason is Reason.ACCESS_DENIED, denied
    s3_missing = s3._error(
        RuntimeError("Generic error: http://127.0.0.1:5403/b/k 404 Not Found"), "s3://b/k"
    )
    assert s3_missing.reason is Reason.NOT_FOUND, s3_missing
