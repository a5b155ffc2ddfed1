"""jobd.crypto without Redis: keys, the envelope, what binds a ciphertext to its job and field,
rotation, how keys are read (arguments, the environment, jobs.toml), and what stays unloaded."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
import sys

import pytest

from jobd import crypto
from jobd.config.loader import dump, loads
from jobd.errors import ConfigError, DecryptError
from jobd.model import ErrorInfo, decode_error, encode_error, job_info
from jobd.serializer import JsonSerializer

KEY = crypto.new_key()
OLD = crypto.new_key()
BINDING = {"job_id": "job-1", "queue": "default", "function": "send", "part": crypto.PAYLOAD}


def keys(*texts: str) -> crypto.Keys:
    made = crypto.keys_from(texts, "test")
    assert made is not None
    return made


# -- keys -----------------------------------------------------------------------------------------


def test_a_new_key_is_32_random_bytes_as_url_safe_base64() -> None:
    first, second = crypto.new_key(), crypto.new_key()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32
    assert crypto.parse_key(first) == base64.urlsafe_b64decode(first)
    assert crypto.parse_key(first.rstrip("=")) == crypto.parse_key(first)  # padding optional
    assert crypto.parse_key(f"  {first}\n") == crypto.parse_key(first)
    raw = bytes(range(32))
    assert crypto.parse_key(raw) == raw  # raw bytes as they are


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        base64.urlsafe_b64encode(bytes(16)).decode(),  # 16 bytes: AES-128, not allowed
        base64.urlsafe_b64encode(bytes(33)).decode(),
        base64.b64encode(b"\xfb" * 32).decode(),  # standard base64 (+ and /), not URL-safe
        "k" * 43 + "!",
        b"\xff" * 44,
    ],
)
def test_a_malformed_key_is_refused_without_showing_it(text: str | bytes) -> None:
    with pytest.raises(ValueError) as error:
        crypto.parse_key(text)
    assert str(error.value) == crypto.KEY_RULE
    if text:
        assert str(text) not in str(error.value)


def test_the_key_id_is_the_start_of_the_keys_sha256() -> None:
    raw = crypto.parse_key(KEY)
    assert crypto.key_id(raw) == hashlib.sha256(raw).hexdigest()[:8]
    assert keys(KEY, OLD).ids == (crypto.key_id(raw), crypto.key_id(crypto.parse_key(OLD)))


def test_keys_show_their_ids_only() -> None:
    made = keys(KEY)
    assert repr(made) == f"Keys(ids=[{made.ids[0]!r}])"
    assert KEY not in repr(made) and KEY[:10] not in repr(made)


# -- the envelope ---------------------------------------------------------------------------------


def test_encrypt_makes_a_recognisable_envelope_that_decrypts() -> None:
    made = keys(KEY)
    sealed = made.encrypt(b'{"v":1,"args":["secret"]}', **BINDING)
    assert sealed.startswith(b"jobd-enc:v1:" + made.ids[0].encode() + b":")
    assert sealed.isascii() and b"secret" not in sealed
    assert crypto.is_encrypted(sealed) and crypto.is_encrypted(sealed.decode())
    assert crypto.envelope_key_id(sealed) == made.ids[0]
    assert len(sealed) == crypto.sealed_size(len(b'{"v":1,"args":["secret"]}'))
    assert made.decrypt(sealed, **BINDING) == b'{"v":1,"args":["secret"]}'
    # a fresh random nonce each time: the same plaintext never gives the same ciphertext
    assert made.encrypt(b"same", **BINDING) != made.encrypt(b"same", **BINDING)


def test_plain_values_are_not_envelopes() -> None:
    for value in (b'{"v":1}', b"", None, "text", b"jobd-encrypted? no"):
        assert not crypto.is_encrypted(value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job_id", "job-2"),
        ("queue", "other"),
        ("function", "delete_everything"),
        ("part", crypto.RESULT),
    ],
)
def test_a_ciphertext_moved_to_another_job_or_field_does_not_decrypt(
    field: str, value: str
) -> None:
    made = keys(KEY)
    sealed = made.encrypt(b"payload", **BINDING)
    with pytest.raises(DecryptError) as error:
        made.decrypt(sealed, **{**BINDING, field: value})
    assert error.value.key_id == made.ids[0] and not error.value.missing
    assert "not encrypted for this job" in str(error.value)
    assert error.value.shown == f"encrypted (key {made.ids[0]} does not open it)"


def test_a_changed_or_damaged_ciphertext_does_not_decrypt() -> None:
    made = keys(KEY)
    sealed = made.encrypt(b"payload", **BINDING)
    head, _, body = sealed.rpartition(b":")
    flipped = body[:5] + (b"A" if body[5:6] != b"A" else b"B") + body[6:]
    for damaged in (head + b":" + flipped, head + b":", head + b":!!!", b"jobd-enc:v1:zz:x"):
        with pytest.raises(DecryptError):
            made.decrypt(damaged, **BINDING)


def test_a_value_of_another_key_names_the_key_it_needs() -> None:
    sealed = keys(OLD).encrypt(b"payload", **BINDING)
    needed = keys(OLD).ids[0]
    with pytest.raises(DecryptError) as error:
        keys(KEY).decrypt(sealed, **BINDING)
    assert error.value.missing and error.value.key_id == needed
    assert f"encrypted with key {needed}" in str(error.value)
    assert error.value.shown == f"encrypted (no key {needed})"
    assert OLD not in str(error.value) and KEY not in str(error.value)


def test_rotation_the_first_key_encrypts_every_key_decrypts() -> None:
    rotated = keys(KEY, OLD)
    from_before = keys(OLD).encrypt(b"old job", **BINDING)
    assert rotated.decrypt(from_before, **BINDING) == b"old job"
    fresh = rotated.encrypt(b"new job", **BINDING)
    assert crypto.envelope_key_id(fresh) == rotated.ids[0]
    # a worker answers a job in the key it came with
    answer = rotated.encrypt(b"result", **{**BINDING, "part": "result"}, key_id=rotated.ids[1])
    assert keys(OLD).decrypt(answer, **{**BINDING, "part": "result"}) == b"result"


# -- reading keys ---------------------------------------------------------------------------------


def test_producer_keys_from_the_argument_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(crypto.ENCRYPTION_KEYS_ENV, raising=False)
    assert crypto.producer_keys(None) is None
    monkeypatch.setenv(crypto.ENCRYPTION_KEYS_ENV, f"{KEY}, {OLD},")
    from_environment = crypto.producer_keys(None)
    assert from_environment is not None and from_environment.ids == keys(KEY, OLD).ids
    assert crypto.producer_keys([]) is None  # given, and empty: off, whatever the environment says
    given = crypto.producer_keys([OLD])
    assert given is not None and given.ids == keys(OLD).ids
    as_text = crypto.producer_keys(f"{OLD},{KEY}")
    assert as_text is not None and as_text.ids == keys(OLD, KEY).ids


def test_a_malformed_producer_key_is_named_by_its_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError) as error:
        crypto.producer_keys([KEY, "not-a-key-at-all"])
    assert error.value.problems == (f"encryption_keys[1]: {crypto.KEY_RULE}",)
    monkeypatch.setenv(crypto.ENCRYPTION_KEYS_ENV, "oops-secret")
    with pytest.raises(ConfigError) as error:
        crypto.producer_keys(None)
    assert error.value.problems == (f"JOBD_ENCRYPTION_KEYS[0]: {crypto.KEY_RULE}",)
    assert "oops-secret" not in str(error.value)


def test_without_cryptography_keys_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ConfigError) as error:
        keys(KEY)
    assert "jobd[crypto]" in str(error.value)


WORKER_KEYS = '[worker]\nencryption_keys = ["${NEW}", "${OLD:-}"]\n'


def test_jobs_toml_reads_the_keys_from_the_environment() -> None:
    settings = loads(WORKER_KEYS, environ={"NEW": KEY, "OLD": OLD})
    assert settings.worker.encryption_keys == (KEY, OLD)
    assert KEY not in repr(settings) and KEY not in dump(settings)
    assert loads(WORKER_KEYS, environ={"NEW": KEY}).worker.encryption_keys == (KEY,)  # "" skipped
    assert loads("", environ={}).worker.encryption_keys == ()


def test_a_key_written_into_jobs_toml_is_refused_without_showing_it() -> None:
    text = f'[worker]\nencryption_keys = ["${{NEW}}", "{OLD}"]\n'
    with pytest.raises(ConfigError) as error:
        loads(text, source="jobs.toml", environ={"NEW": KEY})
    assert error.value.problems == (
        "jobs.toml: worker.encryption_keys[1]: must be read from the environment, like "
        'encryption_keys = ["${JOBD_ENCRYPTION_KEY}"] (the value written in the file is not '
        "shown)",
    )
    assert OLD not in str(error.value)


def test_a_malformed_key_in_jobs_toml_is_named_by_its_position() -> None:
    with pytest.raises(ConfigError) as error:
        loads(WORKER_KEYS, source="jobs.toml", environ={"NEW": KEY, "OLD": "hunter2-secret"})
    assert error.value.problems == (
        f"jobs.toml: worker.encryption_keys[1]: {crypto.KEY_RULE}; the value is not shown",
    )
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[worker]\nencryption_keys = "${NEW}"\n', "worker.encryption_keys: expected an array"),
        ("[worker]\nencryption_keys = [1]\n", "worker.encryption_keys[0]: expected string"),
        ('[worker]\nencryption_keys = ["${MISSING}"]\n', "variable MISSING is not set"),
    ],
)
def test_other_key_mistakes_are_named(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        loads(text, environ={"NEW": KEY})
    assert problem in str(error.value)


# -- the model ------------------------------------------------------------------------------------


def test_an_errors_message_and_traceback_are_encrypted_and_its_type_stays_readable() -> None:
    seal = crypto.JobSeal(keys(KEY), "job-1", "default", "send")
    stored = encode_error(ErrorInfo("ValueError", "card 4111", "Traceback: card 4111"), seal)
    document = json.loads(stored)
    assert document["type"] == "ValueError" and b"4111" not in stored
    assert decode_error(stored, seal) == ErrorInfo(
        "ValueError", "card 4111", "Traceback: card 4111"
    )
    marker = f"encrypted (no key {keys(KEY).ids[0]})"
    assert decode_error(stored) == ErrorInfo("ValueError", marker, marker)
    assert decode_error(encode_error(ErrorInfo("E", "plain"))) == ErrorInfo("E", "plain", "")


def test_job_info_decrypts_with_the_keys_and_shows_a_marker_without() -> None:
    made = keys(KEY)
    seal = crypto.JobSeal(made, "job-1", "default", "send")
    fields = {
        b"function": b"send",
        b"queue": b"default",
        b"status": b"succeeded",
        b"payload": seal.seal(b'{"v":1,"args":["a@example.com"],"kwargs":{}}', crypto.PAYLOAD),
        b"result": seal.seal(b'"sent"', crypto.RESULT),
        b"progress": seal.seal(b'{"fraction":1.0,"message":"ok"}', "event:progress"),
    }
    serializer = JsonSerializer()
    opened = job_info("job-1", fields, serializer, made)
    assert (opened.args, opened.result, opened.encryption_key_id) == (
        ("a@example.com",),
        "sent",
        made.ids[0],
    )
    assert opened.progress is not None and opened.progress.message == "ok"
    closed = job_info("job-1", fields, serializer)
    marker = f"encrypted (no key {made.ids[0]})"
    assert (closed.args, closed.kwargs, closed.result, closed.progress) == (
        (marker,),
        {},
        marker,
        None,
    )
    assert dataclasses.replace(closed, args=(), result=None).encryption_key_id == made.ids[0]


# -- what stays unloaded --------------------------------------------------------------------------


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_cryptography_is_loaded_only_when_keys_are_configured() -> None:
    plain = loaded_after(
        "import os\nos.environ.pop('JOBD_ENCRYPTION_KEYS', None)\n"
        "from jobd.client import Client\nimport jobd.worker.lifecycle, jobd.daemon\n"
        "Client('redis://127.0.0.1:1/0')"
    )
    assert "jobd.crypto" in plain
    # (redis-py imports the bare `cryptography` package, when installed, to see that it is)
    assert not [name for name in plain if name.startswith("cryptography.hazmat")]
    with_keys = loaded_after(
        f"from jobd.client import Client\nClient('redis://127.0.0.1:1/0', encryption_keys=[{KEY!r}])"
    )
    assert "cryptography.hazmat.primitives.ciphers.aead" in with_keys
