"""The initializer's one termination line: ``<Reason>: <message>``, one line, bounded,
with no credential in it (the contract with the operator's Pod watch)."""

from __future__ import annotations

from ferryman.storage.failure import MAX_LINE, Reason, StorageError, line


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
