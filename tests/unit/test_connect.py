"""Redis URLs naming Sentinels or a Cluster (jobd.connect); the failover and cluster runs themselves
are tests/chaos/test_topologies.py."""

from __future__ import annotations

import pytest
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel

from jobd.connect import open_async, open_sync, parse_topology, topology_kind


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
