"""The producer side: `Client` (asyncio) and `SyncClient` with their job handles, and the errors a
producer catches, so that one import line is enough::

    from jobd.client import Client, JobFailed

Needs only `redis`: nothing here loads the worker, the daemon or their dependencies.

    async_client.py   Client, Job: the asyncio client and its job handle
    sync_client.py    SyncClient, SyncJob: the same for synchronous code
    producer.py       what both share: option checks, the serializer, reading jobs.toml
    operations.py     the producer operations written once, without I/O (sans-IO generators)
    events.py         job.events() and job.sse(): reading a job's event stream
    limits.py         Client.limit: a fleet-wide limit's budget outside jobs
"""

from jobd.client.async_client import Client, Job
from jobd.client.sync_client import SyncClient, SyncJob
from jobd.errors import (
    DecryptError,
    InvalidJobOption,
    JobAborted,
    JobdError,
    JobFailed,
    JobNotFound,
    NotReplicated,
    PayloadTooLarge,
    RedisAuthError,
    RedisFull,
    RedisTLSError,
    RedisUnavailable,
    SerializationError,
    UnknownFunction,
)
from jobd.events import JobEvent, Progress
from jobd.model import JobInfo, JobStatus

__all__ = [
    "Client",
    "DecryptError",
    "InvalidJobOption",
    "Job",
    "JobAborted",
    "JobEvent",
    "JobFailed",
    "JobInfo",
    "JobNotFound",
    "JobStatus",
    "JobdError",
    "NotReplicated",
    "PayloadTooLarge",
    "Progress",
    "RedisAuthError",
    "RedisFull",
    "RedisTLSError",
    "RedisUnavailable",
    "SerializationError",
    "SyncClient",
    "SyncJob",
    "UnknownFunction",
]
