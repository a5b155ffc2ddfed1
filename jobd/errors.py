"""The one error tree of jobd. Every message names its culprit (file, key path, function or job id).

    JobdError
    ├── ConfigError            invalid configuration; carries every problem found (CLI exit 78)
    ├── ImportPathError        a `module:attr` path that cannot be imported or is not callable
    ├── RedisUnavailable       Redis cannot be reached (worker retries; producer sees it)
    │   ├── RedisFull          Redis reached maxmemory (noeviction) and refuses to store the job
    │   └── NotReplicated      enqueue_durability = "replica" and no replica confirmed in time
    ├── RedisAuthError         wrong password, missing password or ACL denial (CLI exit 78)
    │   └── RedisTLSError      TLS settings that do not fit the server (certificate, rediss://)
    ├── SerializationError     (also a TypeError) arguments or a result that JSON cannot carry
    │   └── PayloadTooLarge    an encoded payload above the configured byte limit
    ├── PayloadError           a stored payload that cannot be decoded
    ├── DecryptError           an encrypted value without its key, or not encrypted for this job
    ├── InvalidJobOption       a bad enqueue option (job id, queue name, priority, delay …)
    ├── UnknownFunction        strict enqueue of a name that no live worker registers
    ├── JobNotFound            (also a LookupError) a job id that Redis does not hold (any more)
    ├── JobFailed              job.result() of a job that failed; carries remote type, message, traceback
    └── JobAborted             job.result() of a job that was aborted

`Retry` and `Throttled` are not errors of jobd: a job raises them to ask for another try, or to say
that a rate-limited service refused it (the try is not charged).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class JobdError(Exception):
    """Base class of every error jobd raises on purpose."""


class ConfigError(JobdError):
    """The configuration is invalid. `problems` lists every problem, each naming file and key path."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        count = len(self.problems)
        head = "1 configuration error" if count == 1 else f"{count} configuration errors"
        return head + ":\n" + "\n".join(f"  - {problem}" for problem in self.problems)


class ImportPathError(JobdError):
    """A `module:attribute` path that cannot be imported, or does not name a usable callable."""


class RedisUnavailable(JobdError):
    """Redis could not be reached."""


class RedisFull(RedisUnavailable):
    """Redis reached its maxmemory and refuses writes (policy noeviction): nothing was stored."""


class NotReplicated(RedisUnavailable):
    """`enqueue_durability = "replica"`: the primary stored the jobs but no replica confirmed them in
    time, so a failover could still lose them. Enqueuing again with the same `job_ids` is safe."""

    def __init__(self, message: str, job_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.job_ids = tuple(job_ids)


class RedisAuthError(JobdError):
    """Redis refused the credentials (wrong password, missing password, ACL denial)."""


class RedisTLSError(RedisAuthError):
    """The TLS settings do not fit the server: a certificate that fails verification, a missing
    client certificate, or redis:// against a TLS port (and the reverse)."""


class SerializationError(JobdError, TypeError):
    """Arguments or a result that the serializer cannot encode; the message names the path."""


class PayloadTooLarge(SerializationError):
    """An encoded payload larger than the configured limit."""


class PayloadError(JobdError):
    """A stored payload that cannot be decoded; the message says why."""


class DecryptError(JobdError):
    """An encrypted value (jobd.crypto) that cannot be decrypted: its key is not configured, or it
    was not encrypted for this job and field (copied from elsewhere, or changed in Redis). The
    message names the key id it needs, never a key; `shown` is the short text that tools display
    in its place ("encrypted (no key 1a2b3c4d)")."""

    def __init__(self, message: str, *, key_id: str | None = None, missing: bool = False) -> None:
        self.key_id = key_id
        """The id of the key the value names (None for a value too damaged to name one)."""
        self.missing = missing
        """True when that key is not configured; False when it is and does not open the value."""
        super().__init__(message)

    @property
    def shown(self) -> str:
        """What tools show instead of the value."""
        if self.missing:
            return f"encrypted (no key {self.key_id})"
        if self.key_id is None:
            return "encrypted (damaged)"
        return f"encrypted (key {self.key_id} does not open it)"


class InvalidJobOption(JobdError, ValueError):
    """An enqueue option that jobd cannot accept (job id, queue name, priority, delay …)."""


class UnknownFunction(JobdError):
    """A strict enqueue named a function that no live worker registers."""


class JobNotFound(JobdError, LookupError):
    """The job does not exist: never enqueued, expired, or its result is no longer kept."""


class JobFailed(JobdError):
    """The job failed for good. Carries the remote error's type name, message and traceback."""

    def __init__(self, job_id: str, error_type: str, message: str, traceback: str = "") -> None:
        self.job_id = job_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        super().__init__(f"job {job_id} failed: {error_type}: {message}")


class JobAborted(JobdError):
    """The job was aborted before it could finish."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} was aborted")


class Throttled(Exception):
    """Raise inside a job when the service it calls answered "too many requests" (HTTP 429): the
    job goes back to wait without being charged a try, and `limit` (by default every limit of the
    job's function with a rate or a cost) is paused for the whole fleet for `retry_after` seconds.
    A job throttled for longer than its limit's `max_throttled` in all is dead-lettered."""

    def __init__(self, retry_after: float | None = None, *, limit: str | None = None) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(
            f"throttled (retry_after={retry_after}" + (f", limit={limit!r})" if limit else ")")
        )


class Retry(Exception):
    """Raise inside a job to ask for another try after `delay` seconds (None: the configured backoff)."""

    def __init__(self, delay: float | None = None) -> None:
        self.delay = delay
        super().__init__(f"retry requested (delay={delay})")
