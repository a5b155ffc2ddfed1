"""The pieces of bad-input and security hardening that need no Redis: TLS error diagnosis, ACL
error classification, job signatures, secret redaction, the job id rule, Retry delays."""

from __future__ import annotations

import dataclasses
import ssl

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError

from jobd.config import loader as config
from jobd.config.settings import WorkerSettings, redact_url
from jobd.errors import InvalidJobOption
from jobd.model import check_job_id
from jobd.redis.auth import auth_message, is_auth_error
from jobd.redis.tls import tls_problem
from jobd.signing import sign, signature_problem
from jobd.worker.runner import _retry_delay

KEY = b"k" * 32


def ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] something")
    error.reason = reason  # type: ignore[misc]  # what OpenSSL sets on real errors
    return error


def wrapped(cause: BaseException) -> RedisConnectionError:
    """As redis-py raises it: its own error, the SSL error as the cause."""
    try:
        raise RedisConnectionError("Error 1 connecting to 127.0.0.1:6380.") from cause
    except RedisConnectionError as error:
        return error


@pytest.mark.parametrize(
    ("cause", "text"),
    [
        (
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            "certificate verify failed: check ssl_ca_certs= in redis.url",
        ),
        (ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "Redis requires a client certificate"),
        (ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "Redis refused the client certificate"),
        (ssl_error("WRONG_VERSION_NUMBER"), "Redis does not use TLS on this port"),
    ],
)
def test_tls_mistakes_are_recognised_through_redis_py(cause: BaseException, text: str) -> None:
    problem = tls_problem(wrapped(cause))
    assert problem is not None and text in problem


def verify_failure(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    error.verify_message = message  # type: ignore[attr-defined]  # what OpenSSL sets on real errors
    return error


@pytest.mark.parametrize(
    "message",
    [
        "CA cert does not include key usage extension",
        "Basic Constraints of CA cert not marked critical",
        "Missing Authority Key Identifier",
    ],
)
def test_a_ca_that_only_strict_verification_refuses_is_named(message: str) -> None:
    """Python 3.13 verifies strictly: a self-made CA that 3.12 accepted fails there, and the
    message says which extension to add instead of blaming ssl_ca_certs."""
    problem = tls_problem(wrapped(verify_failure(message)))
    assert problem is not None and "VERIFY_X509_STRICT" in problem and message in problem
    assert "ssl_ca_certs" not in problem


def test_an_unknown_ca_still_points_at_ssl_ca_certs() -> None:
    problem = tls_problem(wrapped(verify_failure("unable to get local issuer certificate")))
    assert problem is not None and "check ssl_ca_certs=" in problem
    assert "VERIFY_X509_STRICT" not in problem


def test_outages_are_not_tls_mistakes() -> None:
    assert tls_problem(wrapped(ConnectionResetError(104, "reset"))) is None
    assert tls_problem(wrapped(ssl_error("SOMETHING_ELSE"))) is None


def test_acl_denials_are_credential_errors_with_a_hint() -> None:
    channels = NoPermissionError("this user has no permissions to access one of the channels")
    command = NoPermissionError("this user has no permissions to run the 'evalsha' command")
    in_script = ResponseError("ERR Error running script: NOPERM this user has no permissions")
    assert all(is_auth_error(error) for error in (channels, command, in_script))
    assert not is_auth_error(ResponseError("WRONGTYPE Operation against a key"))
    assert "give it the channel pattern &<key_prefix>:*" in auth_message("url", channels)
    assert "lacks a permission jobd needs" in auth_message("url", command)
    assert "lacks a permission jobd needs" in auth_message("url", in_script)


def test_a_signature_binds_id_queue_function_and_payload() -> None:
    good = sign(KEY, "j1", "default", "send", b"{}")
    assert good.startswith(b"v1:")
    assert signature_problem(KEY, good, "j1", "default", "send", b"{}") is None
    for changed in (
        ("j2", "default", "send", b"{}"),
        ("j1", "other", "send", b"{}"),
        ("j1", "default", "drop", b"{}"),
        ("j1", "default", "send", b"{ }"),
        ("j1d", "efault", "send", b"{}"),  # the parts are length-prefixed: no shifting
    ):
        assert signature_problem(KEY, good, *changed) is not None
    assert signature_problem(b"x" * 32, good, "j1", "default", "send", b"{}") is not None
    assert signature_problem(KEY, None, "j1", "default", "send", b"{}") == (
        "the job carries no signature"
    )


def test_secrets_stay_out_of_repr_and_dump() -> None:
    assert "s3cret" not in repr(WorkerSettings(signing_key="s3cret" * 8))
    assert redact_url("rediss://u:pw@h:1/0?ssl_password=kp&ssl_ca_certs=/ca.pem") == (
        "rediss://u:***@h:1/0?ssl_password=***&ssl_ca_certs=/ca.pem"
    )
    settings = config.loads('[worker]\nsigning_key = "${K}"\n', environ={"K": "s3cret" * 8})
    assert settings.worker.signing_key == "s3cret" * 8
    assert "s3cret" not in config.dump(settings) + repr(settings)
    assert dataclasses.replace(settings.worker, signing_key="") == WorkerSettings()


@pytest.mark.parametrize(
    "job_id", ["a" * 201, "a b", "a\nb", "\x00", "\udcff", "a\u2028b", "a\x85b", "", 7]
)
def test_the_job_id_rule(job_id: object) -> None:
    with pytest.raises(InvalidJobOption, match="use 1-200 printable characters without spaces"):
        check_job_id(job_id)  # type: ignore[arg-type]


def test_the_job_id_rule_accepts_printable_unicode() -> None:
    for job_id in ("welcome:42", "{other}:1", "é" * 200, "cron:nightly:1774746000"):
        assert check_job_id(job_id) == job_id


@pytest.mark.parametrize(
    ("delay", "expected"),
    [(5, 5.0), (0.25, 0.25), (-3, 0.0), (1e300, 366 * 86_400.0), (float("nan"), None),
     (float("inf"), None), ("10", None), (True, None), (None, None)],
)  # fmt: skip
def test_retry_delays_are_made_schedulable(delay: object, expected: float | None) -> None:
    assert _retry_delay(delay) == expected
