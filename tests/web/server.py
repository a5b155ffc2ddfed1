"""Serving a dashboard for the tests: a real uvicorn server on a free loopback port, in a thread
with an event loop of its own (where its jobd Client lives), stopped and joined on exit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import uvicorn

from jobd.client import Client

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

AppFactory = Callable[[Client], Any]


class ServedApp:
    """`with ServedApp(make_app, redis_url, key_prefix) as served:` then `served.url`."""

    def __init__(self, make_app: AppFactory, redis_url: str, key_prefix: str) -> None:
        self._make_app = make_app
        self._redis_url = redis_url
        self._key_prefix = key_prefix
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            self._error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        async with Client(self._redis_url, key_prefix=self._key_prefix) as client:
            config = uvicorn.Config(
                self._make_app(client), host="127.0.0.1", port=0, log_config=None,
                access_log=False, lifespan="off", timeout_graceful_shutdown=5,
            )  # fmt: skip
            self._server = uvicorn.Server(config)
            task = asyncio.create_task(self._server.serve())
            while not self._server.started and not task.done():  # noqa: ASYNC110 - a flag
                await asyncio.sleep(0.01)
            if self._server.started:
                self.port = self._server.servers[0].sockets[0].getsockname()[1]
            self._ready.set()
            await task

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or not self.port:
            self.__exit__(None, None, None)
            raise AssertionError(f"the dashboard did not start: {self._error!r}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        assert not self._thread.is_alive(), "the dashboard did not stop"
        if self._error is not None and kind is None:
            raise self._error
