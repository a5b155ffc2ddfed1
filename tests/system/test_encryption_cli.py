"""Encrypted payloads through the command line and the real daemon (docs/encryption.md): `jobd
keygen`, the commands reading encrypted jobs with the configured key and marking them without
it, and the configuration mistakes, which never show a key."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import redis

from jobd import crypto
from tests.support.daemon import write_config
from tests.support.redis_server import RedisServer
from tests.system.conftest import MakeDaemon
from tests.system.test_cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, jobd, one_line_error


def fields_of(output: str) -> dict[str, str]:
    """`jobd job show`'s `label  value` lines."""
    return dict(line.split(None, 1) for line in output.splitlines() if "  " in line)


def test_keygen_prints_a_new_key_and_its_id() -> None:
    first, second = jobd("keygen"), jobd("keygen")
    assert first.returncode == EXIT_OK, first.stderr
    key = first.stdout.strip()
    assert first.stdout == key + "\n" and key != second.stdout.strip()
    assert first.stderr.strip() == f"key id {crypto.key_id(crypto.parse_key(key))}"
    assert "URL-safe base64" in jobd("keygen", "--help").stdout


def test_the_commands_decrypt_with_the_key_and_mark_without_it(
    tmp_path: Path,
    redis_server: RedisServer,
    key_prefix: str,
    make_daemon: MakeDaemon,
) -> None:
    key = crypto.new_key()
    ident = crypto.key_id(crypto.parse_key(key))
    marker = f"encrypted (no key {ident})"
    environ = {"TEST_ENCRYPTION_KEY": key}
    keyed = write_config(
        tmp_path,
        redis_server.url,
        key_prefix,
        worker={"encryption_keys": ["${TEST_ENCRYPTION_KEY}"]},
    )
    keyless = write_config(tmp_path, redis_server.url, key_prefix, filename="keyless.toml")
    daemon = make_daemon(keyed, env=environ).start()
    daemon.wait_running()

    done = jobd(
        "enqueue", "echo", '["card 4111-1111-1111"]', "--kwargs", '{"to": "ada@example.com"}',
        "--wait", "20s", "--config", str(keyed), **environ,
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    job_id, result = done.stdout.splitlines()
    assert json.loads(result) == {
        "args": ["card 4111-1111-1111"],
        "kwargs": {"to": "ada@example.com"},
    }
    failed = jobd(
        "enqueue", "fail", '["secret boom"]', "--max-tries", "1", "--wait", "20s",
        "--config", str(keyed), **environ,
    )  # fmt: skip
    one_line_error(failed, EXIT_FAILURE, "failed: ValueError: secret boom")
    dead_id = failed.stdout.strip()

    with redis.Redis.from_url(redis_server.url) as connection:
        stored = b"".join(
            value
            for name in connection.scan_iter(match=f"{key_prefix}:*")
            if connection.type(name) == b"hash"
            for value in connection.hgetall(name).values()
        )
    # distinctive texts: a short one ("4111") turns up in millisecond timestamps by chance
    assert b"4111-1111" not in stored and b"ada@example" not in stored
    assert b"secret boom" not in stored

    shown = jobd("job", "show", job_id, "--config", str(keyed), **environ)
    assert shown.returncode == EXIT_OK, shown.stderr
    fields = fields_of(shown.stdout)
    assert (fields["args"], fields["kwargs"]) == (
        '["card 4111-1111-1111"]',
        '{"to": "ada@example.com"}',
    )
    assert (
        fields["result"] == '{"args": ["card 4111-1111-1111"], "kwargs": {"to": "ada@example.com"}}'
    )
    assert fields["encrypted"] == f"with key {ident}"
    blind = jobd("job", "show", job_id, "--config", str(keyless))
    assert blind.returncode == EXIT_OK, blind.stderr
    fields = fields_of(blind.stdout)
    assert (fields["args"], fields["kwargs"]) == (f'["{marker}"]', "{}")
    assert fields["result"] == json.dumps(marker)
    document = json.loads(jobd("job", "show", dead_id, "--json", "--config", str(keyless)).stdout)
    assert document["error"] == {"type": "ValueError", "message": marker, "traceback": marker}
    assert document["encryption_key_id"] == ident

    listed = jobd("dead", "list", "--config", str(keyed), **environ)
    assert listed.returncode == EXIT_OK, listed.stderr
    assert "ValueError: secret boom" in listed.stdout
    listed = jobd("dead", "list", "--json", "--config", str(keyless))
    (entry,) = json.loads(listed.stdout)["jobs"]
    assert entry["error"] == {"type": "ValueError", "message": marker}

    # a keyless producer's job runs beside, and a keyless --wait reads it
    done = jobd("enqueue", "echo", "[1]", "--wait", "20s", "--config", str(keyless))
    assert done.returncode == EXIT_OK, done.stderr

    settings_shown = jobd("config", "show", "--config", str(keyed), **environ)
    assert tomllib.loads(settings_shown.stdout)["worker"]["encryption_keys"] == ["***"]
    assert f"key ids {ident}" in settings_shown.stdout
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK
    everything = daemon.log_text() + settings_shown.stdout + settings_shown.stderr
    assert key not in everything
    assert f"decrypts keys {ident}" in daemon.log_text()


def test_key_mistakes_in_the_file_exit_78_without_showing_the_key(
    tmp_path: Path, key_prefix: str
) -> None:
    key = crypto.new_key()
    literal = write_config(
        tmp_path, "redis://127.0.0.1:1/0", key_prefix, worker={"encryption_keys": [key]}
    )
    done = jobd("check", "--config", str(literal))
    assert done.returncode == EXIT_CONFIG
    assert "worker.encryption_keys[0]: must be read from the environment" in done.stderr
    assert key not in done.stderr + done.stdout

    malformed = write_config(
        tmp_path,
        "redis://127.0.0.1:1/0",
        key_prefix,
        filename="malformed.toml",
        worker={"encryption_keys": ["${GOOD_KEY}", "${BAD_KEY}"]},
    )
    done = jobd("check", "--config", str(malformed), GOOD_KEY=key, BAD_KEY="hunter2-hunter2")
    assert done.returncode == EXIT_CONFIG
    assert "worker.encryption_keys[1]: not a 32-byte URL-safe base64 key" in done.stderr
    assert "hunter2" not in done.stderr and key not in done.stderr
    done = jobd("status", "--config", str(malformed), GOOD_KEY=key, BAD_KEY="hunter2-hunter2")
    assert done.returncode == EXIT_CONFIG and "worker.encryption_keys[1]" in done.stderr
