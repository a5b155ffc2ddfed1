"""Security of a real deployment: TLS with CA and client certificates against a redis-server started
with files that `openssl` makes here, Redis ACL users, secrets that never show, and the HTTP
listener under abuse (docs/reliability.md §5.3 B18 and B23, issue 5 "Security").

Every configuration or credential mistake stops the daemon with exit 78 and one message saying what
to change, instead of an endless reconnect loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobd.client import SyncClient
from jobd.config import loader as config
from jobd.config.settings import HttpSettings
from jobd.errors import RedisTLSError
from jobd.model import JobStatus
from jobd.redis.tls import diagnose
from tests.support.daemon import REPO_ROOT, Daemon, write_config
from tests.support.redis_server import RedisServer, free_port
from tests.support.wait import wait_until
from tests.system.conftest import MakeDaemon

EXIT_OK = 0
EXIT_CONFIG = 78
GUARD = 30.0
FAST = {"connect_timeout": "1s", "socket_timeout": "2s"}
"""Short Redis timeouts: a wrong-protocol connection hangs until the connect timeout."""


# -- certificates and a TLS redis-server ----------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    """A client certificate signed by a CA that Redis does not trust."""
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
        "-days", "2", "-subj", f"/CN={name}",
        # what strict verification (Python 3.13 and newer) demands of a CA
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _make_signed(directory: Path, name: str, ca: tuple[Path, Path], san: str) -> tuple[Path, Path]:
    key, request, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
        "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions),
        cwd=directory,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make the TLS test certificates")
    directory = tmp_path_factory.mktemp("tls")
    ca = _make_ca(directory, "jobd-test-ca")
    rogue_ca = _make_ca(directory, "rogue-ca")
    server = _make_signed(directory, "server", ca, "DNS:localhost,IP:127.0.0.1")
    client = _make_signed(directory, "client", ca, "")
    rogue = _make_signed(directory, "rogue", rogue_ca, "")
    return Certificates(ca[0], *server, *client, *rogue)


@dataclass(frozen=True)
class TlsRedis:
    server: RedisServer
    tls_port: int
    certificates: Certificates

    def url(self, *, ca: bool = True, client: str = "client", scheme: str = "rediss") -> str:
        """The TLS port's URL; `client` = "client", "rogue" or "" (no client certificate)."""
        query = []
        if ca:
            query.append(f"ssl_ca_certs={self.certificates.ca}")
        if client:
            cert = getattr(self.certificates, f"{client}_cert")
            key = getattr(self.certificates, f"{client}_key")
            query += [f"ssl_certfile={cert}", f"ssl_keyfile={key}"]
        suffix = "?" + "&".join(query) if query else ""
        return f"{scheme}://127.0.0.1:{self.tls_port}/0{suffix}"


@pytest.fixture(scope="module")
def tls_redis(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsRedis]:
    """A redis-server with a TLS port that demands client certificates (its plain port stays for
    the fixture's own readiness checks)."""
    port = free_port()
    tls_args = [
        "--tls-port", str(port), "--tls-cert-file", str(certificates.server_cert),
        "--tls-key-file", str(certificates.server_key), "--tls-ca-cert-file",
        str(certificates.ca), "--tls-auth-clients", "yes",
    ]  # fmt: skip
    server = RedisServer(
        tmp_path_factory.mktemp("redis-tls"), appendonly=False, extra_args=tls_args
    )
    try:
        server.start()
    except RuntimeError as error:
        if "tls" in str(error).lower():
            pytest.skip(f"this redis-server has no TLS support (built without BUILD_TLS): {error}")
        raise
    with server:
        yield TlsRedis(server, port, certificates)


def run_jobd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if key != "JOBD_CONFIG"}
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), environ.get("PYTHONPATH")])
    )
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "jobd", *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )


def wait_status(job: object, status: JobStatus) -> None:
    wait_until(lambda: job.status() == status, GUARD, message=f"{job!r} {status}")  # type: ignore[attr-defined]


# -- TLS ------------------------------------------------------------------------------------------


def test_rediss_with_ca_and_client_certificate_runs_jobs(
    tls_redis: TlsRedis, tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    url = tls_redis.url()
    path = write_config(tmp_path, url, key_prefix)
    assert run_jobd("check", "--config", str(path)).returncode == EXIT_OK
    daemon = make_daemon(path).start()
    daemon.wait_running()
    with SyncClient(url, key_prefix=key_prefix) as client:
        job = client.enqueue("echo", "over TLS")
        assert job.result(timeout=GUARD) == {"args": ["over TLS"], "kwargs": {}}
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK


TLS_MISTAKES = {
    "redis:// to a TLS port": (
        {"scheme": "redis", "ca": False, "client": ""},
        "Redis requires TLS: use rediss://",
    ),
    "unknown CA": ({"ca": False}, "certificate verify failed: check ssl_ca_certs= in redis.url"),
    "no client certificate": (
        {"client": ""},
        "Redis requires a client certificate (tls-auth-clients): add ssl_certfile= and "
        "ssl_keyfile= to redis.url",
    ),
    "client certificate of another CA": (
        {"client": "rogue"},
        "Redis refused the client certificate (ssl_certfile= in redis.url)",
    ),
}


@pytest.mark.parametrize("case", list(TLS_MISTAKES))
def test_tls_mistakes_stop_the_worker_with_exit_78_and_the_fix(
    tls_redis: TlsRedis, tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon, case: str
) -> None:
    url_options, message = TLS_MISTAKES[case]
    url = tls_redis.url(**url_options)  # type: ignore[arg-type]
    path = write_config(tmp_path, url, key_prefix, redis=FAST)
    daemon = make_daemon(path).start()
    assert daemon.wait_exit(GUARD) == EXIT_CONFIG
    log = daemon.log_text()
    assert message in log, log
    assert "Traceback" not in log
    assert ": running" not in log


def test_rediss_to_a_plain_port_stops_the_worker(
    tls_redis: TlsRedis, tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    certificates = tls_redis.certificates
    url = f"rediss://127.0.0.1:{tls_redis.server.port}/0?ssl_ca_certs={certificates.ca}"
    path = write_config(tmp_path, url, key_prefix, redis=FAST)
    daemon = make_daemon(path).start()
    assert daemon.wait_exit(GUARD) == EXIT_CONFIG
    assert "Redis does not use TLS on this port: use redis:// instead of rediss://" in (
        daemon.log_text()
    )


def test_the_tls_diagnosis_asks_the_server(tls_redis: TlsRedis) -> None:
    """What the worker asks when a connection fails before Redis ever answered (jobd.redis.tls)."""
    plain_port = (
        f"rediss://127.0.0.1:{tls_redis.server.port}/0?ssl_ca_certs={tls_redis.certificates.ca}"
    )
    cases = {
        tls_redis.url(scheme="redis", ca=False, client=""): "Redis requires TLS: use rediss://",
        tls_redis.url(client=""): "Redis requires a client certificate",
        tls_redis.url(client="rogue"): "Redis refused the client certificate",
        tls_redis.url(ca=False): "certificate verify failed",
        plain_port: "Redis does not use TLS on this port",
    }
    for url, text in cases.items():
        problem = asyncio.run(diagnose(url, 2.0))
        assert problem is not None and text in problem, (url, problem)
    assert asyncio.run(diagnose(tls_redis.url(), 2.0)) is None  # nothing wrong
    assert asyncio.run(diagnose(tls_redis.server.url, 2.0)) is None  # plain to plain
    assert asyncio.run(diagnose(f"redis://127.0.0.1:{free_port()}/0", 2.0)) is None  # down


def test_a_producer_names_the_certificate_problem(tls_redis: TlsRedis, key_prefix: str) -> None:
    url = tls_redis.url(ca=False)
    with (
        SyncClient(url, key_prefix=key_prefix, connect_timeout=2) as client,
        pytest.raises(RedisTLSError, match="certificate verify failed: check ssl_ca_certs="),
    ):
        client.enqueue("echo", 1)


def test_a_missing_tls_file_is_a_configuration_error(tmp_path: Path, key_prefix: str) -> None:
    url = f"rediss://127.0.0.1:6380/0?ssl_ca_certs={tmp_path / 'nope.pem'}"
    path = write_config(tmp_path, url, key_prefix)
    result = run_jobd("check", "--config", str(path))
    assert result.returncode == EXIT_CONFIG
    assert f"redis.url: ssl_ca_certs= names '{tmp_path / 'nope.pem'}', which is not a file" in (
        result.stderr
    )
    plain = write_config(
        tmp_path, url.replace("rediss:", "redis:").replace("nope.pem", ""), key_prefix
    )
    assert (
        "takes effect only with TLS: use a rediss:// URL"
        in run_jobd("check", "--config", str(plain)).stderr
    )


# -- ACL users ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis-acl"), appendonly=False) as server:
        yield server


def acl_user(server: RedisServer, prefix: str, *rules: str) -> str:
    """Create ACL user `prefix` (password: a fresh secret) with `rules`; its redis:// URL."""
    password = "pw-" + uuid.uuid4().hex
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", prefix, "reset", "on", f">{password}", *rules)
    return f"redis://{prefix}:{password}@127.0.0.1:{server.port}/0"


def test_an_acl_user_limited_to_its_prefix_runs_jobs(
    acl_redis: RedisServer, tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    # Only its own keys and channels, no dangerous commands except what jobd reads at startup.
    url = acl_user(
        acl_redis, key_prefix, f"~{key_prefix}:*", f"&{key_prefix}:*", "+@all", "-@dangerous",
        "+info", "+config|get",
    )  # fmt: skip
    daemon = make_daemon(write_config(tmp_path, url, key_prefix)).start()
    daemon.wait_running()
    with SyncClient(url, key_prefix=key_prefix) as client:
        job = client.enqueue("echo", 1)
        assert job.result(timeout=GUARD) == {"args": [1], "kwargs": {}}
        running = client.enqueue("sleep", 60)
        wait_status(running, JobStatus.RUNNING)
        assert running.abort(timeout=GUARD) is True  # published on the user's own channel
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK
    assert "Traceback" not in daemon.log_text()


ACL_DENIALS = {
    "no EVALSHA": (("~*", "&*", "+@all", "-evalsha"), "lacks a permission jobd needs"),
    "no channels": (("~*", "resetchannels", "+@all"), "may not use jobd's pub/sub channels"),
    "other keys only": (("~other:*", "&*", "+@all"), "lacks a permission jobd needs"),
}


@pytest.mark.parametrize("case", list(ACL_DENIALS))
def test_an_acl_user_missing_a_permission_exits_78(
    acl_redis: RedisServer, tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon, case: str
) -> None:
    rules, message = ACL_DENIALS[case]
    url = acl_user(acl_redis, key_prefix, *rules)
    daemon = make_daemon(write_config(tmp_path, url, key_prefix)).start()
    assert daemon.wait_exit(GUARD) == EXIT_CONFIG
    log = daemon.log_text()
    assert message in log, log
    assert "Traceback" not in log
    assert url.split(":")[2].split("@")[0] not in log  # the password


# -- secrets --------------------------------------------------------------------------------------


def test_passwords_and_the_signing_key_never_show(
    acl_redis: RedisServer, tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    url = acl_user(acl_redis, key_prefix, "~*", "&*", "+@all")
    password = url.split(":")[2].split("@")[0]
    signing_key = "sk-" + uuid.uuid4().hex
    environ = {"TEST_REDIS_URL": url, "TEST_SIGNING_KEY": signing_key}
    path = write_config(
        tmp_path, "${TEST_REDIS_URL}", key_prefix, worker={"signing_key": "${TEST_SIGNING_KEY}"}
    )
    settings = config.load(path, environ=environ)
    shown = [repr(settings), config.dump(settings)]
    for command in (("check",), ("config", "show")):
        result = run_jobd(*command, "--config", str(path), **environ)
        assert result.returncode == EXIT_OK, result.stderr
        shown += [result.stdout, result.stderr]
    assert 'signing_key = "***"' in shown[-2]  # config show says it is set

    daemon = make_daemon(path, "--log-level", "debug", env=environ).start()
    daemon.wait_running()
    with SyncClient(url, key_prefix=key_prefix, signing_key=signing_key) as client:
        shown.append(repr(client))
        done = client.enqueue("echo", 1)
        wait_status(done, JobStatus.SUCCEEDED)
        failed = client.enqueue("fail", "boom", max_tries=1)
        wait_status(failed, JobStatus.FAILED)
        # `jobd enqueue` signs with the configured key: the worker runs its job
        result = run_jobd("enqueue", "echo", "[2]", "--config", str(path), **environ)
        assert result.returncode == EXIT_OK, result.stderr
        shown += [result.stdout, result.stderr]
        wait_status(client.job(result.stdout.strip()), JobStatus.SUCCEEDED)
    status, body = daemon.get("/metrics")
    assert status == 200
    shown.append(body.decode())
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK
    shown.append(daemon.log_text())
    everything = "\n".join(shown)
    assert password not in everything
    assert signing_key not in everything
    assert "***" in everything


def test_a_signing_key_written_into_the_file_is_refused(tmp_path: Path, key_prefix: str) -> None:
    secret = "literal-" + "s" * 40
    path = write_config(
        tmp_path, "redis://127.0.0.1:1/0", key_prefix, worker={"signing_key": secret}
    )
    result = run_jobd("check", "--config", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "worker.signing_key: must be read from the environment" in result.stderr
    assert secret not in result.stderr + result.stdout


# -- the HTTP listener (B23) ----------------------------------------------------------------------


def test_the_listener_defaults_to_loopback() -> None:
    assert HttpSettings().listen == "127.0.0.1:9100"
    assert config.loads("").http.host == "127.0.0.1"


def _raw_request(address: tuple[str, int], data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` as it is and read the answer until the server closes."""
    with socket.create_connection(address, timeout=timeout) as connection:
        # the server may answer and close before it read everything: what we want
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(data)
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


@pytest.fixture
def http_daemon(
    tmp_path: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon
) -> Iterator[Daemon]:
    daemon = make_daemon(write_config(tmp_path, redis_url, key_prefix)).start()
    daemon.wait_running()
    yield daemon
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK


def test_http_abuse_gets_quick_4xx_and_jobs_keep_running(
    http_daemon: Daemon, redis_url: str, key_prefix: str
) -> None:
    host, port = http_daemon.http_address()
    address = (host.strip("[]"), port)
    big = b"x" * (10 * 1024 * 1024)
    with SyncClient(redis_url, key_prefix=key_prefix) as client:
        load = [client.enqueue("echo", index) for index in range(200)]
        for method in (b"POST", b"PUT", b"GET"):
            head = b"%s /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
                method, len(big),
            )  # fmt: skip
            # The body is never read: the answer comes at once, then the connection closes (a
            # reset may swallow the answer; the socket timeout of _raw_request guards a hang).
            answer = _raw_request(address, head + big)
            expected = b"HTTP/1.0 200 " if method == b"GET" else b"HTTP/1.0 405 "
            assert answer == b"" or answer.startswith(expected), (method, answer[:200])
        traversals = (
            "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/metrics/..", "/healthz/../metrics",
            "/.env", "/metrics%00", "/" + "a" * 60_000,
        )  # fmt: skip
        for path in traversals:
            assert http_daemon.get(path)[0] in (404, 414), path
        answer = _raw_request(address, b"FOO /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 405 "), answer[:200]
        assert b"Error code: 400" in _raw_request(address, b"GARBAGE\r\n\r\n")
        idle = socket.create_connection(address)  # a client that never sends its request
        try:
            with concurrent.futures.ThreadPoolExecutor(50) as pool:
                statuses = list(pool.map(lambda _: http_daemon.get("/metrics")[0], range(500)))
        finally:
            idle.close()
        assert statuses == [200] * 500
        wait_until(
            lambda: all(job.status() == JobStatus.SUCCEEDED for job in load),
            GUARD,
            message="the jobs enqueued during the abuse succeeded",
        )
        follow_up = client.enqueue("echo", "after")
        assert follow_up.result(timeout=GUARD) == {"args": ["after"], "kwargs": {}}
    assert http_daemon.running
