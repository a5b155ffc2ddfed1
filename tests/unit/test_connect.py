"""Redis URLs naming Sentinels or a Cluster (jobd.redis.connect); the failover and cluster runs themselves
are tests/chaos/test_topologies.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel

from jobd.redis.connect import open_async, open_sync, parse_topology, topology_kind


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://localhost:6379/0", None),
        ("rediss://h", None),
        ("unix:///run/redis.sock", None),
        ("redis+sentinel://h/main", "sentinel"),
        ("REDISS+SENTINEL://h/main", "sentinel"),
        ("redis+cluster://h:7000", "cluster"),
        ("redis+shard://h", None),
    ],
)
def test_topology_kind(url: str, kind: str | None) -> None:
    assert topology_kind(url) == kind


def test_sentinel_url_names_hosts_service_database_and_credentials() -> None:
    topology = parse_topology(
        "redis+sentinel://app:p%40ss@s1,s2:26380,[::1]:26381/orders/2"
        "?sentinel_password=sp&socket_timeout=3"
    )
    assert topology.nodes == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert topology.service == "orders"
    assert topology.options["db"] == 2
    assert (topology.options["username"], topology.options["password"]) == ("app", "p@ss")
    assert topology.options["socket_timeout"] == 3.0
    assert "ssl" not in topology.options
    assert topology.sentinel_options == {"password": "sp"}


def test_cluster_url_over_tls() -> None:
    topology = parse_topology("rediss+cluster://:pw@n1:7000,n2?ssl_cert_reqs=none")
    assert topology.nodes == (("n1", 7000), ("n2", 6379))
    assert topology.options["ssl"] is True
    assert topology.options["ssl_cert_reqs"] == "none"
    assert topology.options["password"] == "pw"
    assert "db" not in topology.options


async def test_clients_of_each_kind_are_made_without_connecting() -> None:
    single = open_async("redis://127.0.0.1:1/0")
    assert type(single) is redis.asyncio.Redis
    primary = open_async("redis+sentinel://127.0.0.1:1/main", socket_timeout=2)
    assert isinstance(primary.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert primary.connection_pool.service_name == "main"
    cluster = open_async("redis+cluster://127.0.0.1:1")
    assert isinstance(cluster, redis.asyncio.cluster.RedisCluster)
    for client in (single, primary, cluster):
        await client.aclose()
    sync_primary = open_sync("redis+sentinel://127.0.0.1:1/main")
    assert sync_primary.connection_pool.service_name == "main"  # type: ignore[attr-defined]
    sync_primary.close()


PACKED_ARGUMENTS = [
    ("EVALSHA", "a" * 40, 2, "jobd:{default}:queued", b"raw\x00bytes", 0, -7, 1.5, 1e20, "é€"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "jobd"),
    ("SET", "k", ""),
]


@pytest.mark.parametrize("arguments", PACKED_ARGUMENTS)
@pytest.mark.parametrize(
    "url", ["redis://localhost/0", "rediss://localhost/0", "unix:///run/redis.sock"]
)
async def test_asyncio_connections_pack_with_hiredis_to_the_same_bytes(
    url: str, arguments: tuple[object, ...]
) -> None:
    pytest.importorskip("hiredis")
    client = open_async(url)
    try:
        pool = client.connection_pool
        ours = pool.connection_class(**pool.connection_kwargs)
        theirs = type(ours).__mro__[2](**pool.connection_kwargs)  # redis-py's class underneath
        assert type(ours).__name__ == "Lean" + type(theirs).__name__
        assert b"".join(ours.pack_command(*arguments)) == b"".join(theirs.pack_command(*arguments))
    finally:
        await client.aclose()


@pytest.mark.parametrize("bad", [True, None])
async def test_hiredis_packing_refuses_what_redis_py_refuses(bad: object) -> None:
    pytest.importorskip("hiredis")
    client = open_async("redis://localhost/0")
    try:
        pool = client.connection_pool
        with pytest.raises(redis.exceptions.DataError):
            pool.connection_class(**pool.connection_kwargs).pack_command("SET", "k", bad)
    finally:
        await client.aclose()


def test_a_hiredis_without_a_packer_leaves_packing_to_redis_py() -> None:
    """hiredis before 2.2 parses replies but has no pack_command (found with hiredis 2.0.0, which
    pyproject allows): every command then failed with AttributeError. Now redis-py packs.

    The old hiredis is imitated in full, version included, before redis-py is imported: redis-py
    8.2 and newer read `hiredis.__version__` and use hiredis's packer themselves from 3.2 on, so a
    module without the packer but with a new version number is one that never existed."""
    pytest.importorskip("hiredis")
    code = (
        "import asyncio, hiredis\n"
        "hiredis.__version__ = '2.0.0'\n"
        "if hasattr(hiredis, 'pack_command'):\n"
        "    del hiredis.pack_command\n"
        "import jobd.redis.connect\n"
        "assert jobd.redis.connect.hiredis is None\n"
        "pool = jobd.redis.connect.open_async('redis://localhost/0').connection_pool\n"
        "ours = pool.connection_class(**pool.connection_kwargs)\n"
        "theirs = type(ours).__mro__[2](**pool.connection_kwargs)\n"
        f"arguments = {PACKED_ARGUMENTS[0]!r}\n"
        "assert b''.join(ours.pack_command(*arguments)) == b''.join(theirs.pack_command(*arguments))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_sentinel_clients_pack_with_hiredis() -> None:
    pytest.importorskip("hiredis")
    client = open_async("redis+sentinel://s1/main")
    assert client.connection_pool.connection_class.__name__ == "LeanSentinelManagedConnection"
    tls = open_async("rediss+sentinel://s1/main")
    assert tls.connection_pool.connection_class.__name__ == "LeanSentinelManagedSSLConnection"
