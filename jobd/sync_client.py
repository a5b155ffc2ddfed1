"""`jobd.sync_client.SyncClient`, the path under which the synchronous client was first published.
It now lives in `jobd.client` (`from jobd.client import SyncClient`); both paths keep working."""

from jobd.client.sync_client import SyncClient, SyncJob

__all__ = ["SyncClient", "SyncJob"]
