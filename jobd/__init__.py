"""jobd: background jobs for async Python, on Redis.

Only the light parts are imported here, because `import jobd.client` runs this file first: the producer must
not pay for (or need) the worker's dependencies.
"""

from jobd.context import JobContext, current_job
from jobd.errors import (
    ConfigError,
    JobAborted,
    JobdError,
    JobFailed,
    Retry,
    Throttled,
)
from jobd.events import JobEvent, Progress

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "JobAborted",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobdError",
    "Progress",
    "Retry",
    "Throttled",
    "__version__",
    "current_job",
]
