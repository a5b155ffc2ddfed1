"""`jobd cron list` (and the cron part of `jobd status`): every [[cron]] entry with its last run,
that run's outcome and its next run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from jobd.cli.shared import CLI_TIMEOUT, format_moment, print_json, table
from jobd.config.settings import Settings
from jobd.redis.connect import connection_options, open_async
from jobd.redis.embedded import client_url
from jobd.worker.cron import cron_overview

CRON_COLUMNS = ("CRON", "SCHEDULE", "TIMEZONE", "QUEUE", "LAST RUN", "LAST OUTCOME", "NEXT RUN")


def cron_rows(settings: Settings) -> list[dict[str, Any]]:
    """The overview of every entry, read from Redis."""

    async def read() -> list[dict[str, Any]]:
        options = connection_options(
            min(settings.redis.socket_timeout, CLI_TIMEOUT),
            min(settings.redis.connect_timeout, CLI_TIMEOUT),
        )
        client = open_async(client_url(settings), **options)
        try:
            return await cron_overview(client, settings, datetime.now(UTC))
        finally:
            await client.aclose()

    return asyncio.run(read())


def print_cron(rows: list[dict[str, Any]]) -> None:
    """The entries as an aligned table."""

    def outcome(row: dict[str, Any]) -> str:
        if row["last_job"] is None:
            return "-"
        return row["last_status"] or "(result expired)"

    print(
        table(
            CRON_COLUMNS,
            [
                [
                    row["name"] if row["enabled"] else f"{row['name']} (disabled)",
                    row["schedule"],
                    row["timezone"],
                    row["queue"],
                    format_moment(row["last_tick"]),
                    outcome(row),
                    format_moment(row["next_tick"]),
                ]
                for row in rows
            ],
        )
    )


def cron_list(settings: Settings, *, as_json: bool) -> int:
    """`jobd cron list`."""
    rows = cron_rows(settings)
    if as_json:
        print_json({"cron": rows})
    elif not rows:
        print("no [[cron]] entries in the configuration")
    else:
        print_cron(rows)
    return 0
