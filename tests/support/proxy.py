"""An in-process TCP chaos proxy for fault tests (docs/reliability.md §5.1): point a worker's
``redis.url`` at :attr:`ChaosProxy.url` and switch faults at runtime from the test.

Modes (:meth:`set_mode`): ``pass``; ``blackhole`` (sockets stay open, nothing is forwarded: a
half-open network; what was sent meanwhile is delivered when the mode changes back, as TCP would
after a short partition); ``delay`` (every chunk is forwarded ``delay_ms`` late, both ways);
``drop_reply`` (a request whose bytes match the predicate is forwarded, and the connection is
closed before its reply is relayed: the command ran, the client never hears it); ``refuse`` (new
connections are closed at once). :meth:`reset` closes every open connection now (both sides).

The proxy runs its own event loop in a daemon thread, so subprocess workers can use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Self

Predicate = Callable[[bytes], bool]
MODES = ("pass", "blackhole", "delay", "drop_reply", "refuse")


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.writers = (client, upstream)
        self.doomed = False
        """A request matched drop_reply: close instead of relaying the next reply."""

    def close(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()


class ChaosProxy:
    """See the module docstring. Use as a context manager, or call start() and close()."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.delay = 0.0
        self.predicate: Predicate = lambda _: False
        self.dropped: list[bytes] = []
        """The requests whose replies were dropped (their first bytes)."""
        self.connections = 0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()  # set while not blackholed (touched on the proxy's loop only)
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def set_mode(
        self, mode: str, *, delay_ms: float = 0, predicate: Predicate | None = None
    ) -> None:
        """Switch the fault; takes effect for data read from now on."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.delay = delay_ms / 1000
        if predicate is not None:
            self.predicate = predicate
        self.mode = mode
        self._loop.call_soon_threadsafe(self._open.clear if mode == "blackhole" else self._open.set)

    def reset(self) -> int:
        """Close every open connection, both sides, now; returns how many there were."""
        return int(self._call(self._reset()))

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- on the proxy's loop ------------------------------------------------------------------

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _reset(self) -> int:
        links = list(self._links)
        for link in links:
            link.close()
        return len(links)

    async def _shutdown(self) -> None:
        await self._reset()
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # upstream down: the client sees a closed connection
            return
        self.connections += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, request=True),
                self._pump(up_reader, writer, link, request=False),
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        request: bool,
    ) -> None:
        """Forward one direction: read chunks as they come, hand each out when its delay is due."""
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        forwarder = asyncio.create_task(self._forward(chunks, writer, link, request=request))
        try:
            while data := await reader.read(65536):
                if request and self.mode == "drop_reply" and self.predicate(data):
                    link.doomed = True
                    self.dropped.append(data[:200])
                chunks.put_nowait((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            chunks.put_nowait((0.0, b""))  # end of stream
            with contextlib.suppress(Exception):
                await forwarder
            link.close()

    async def _forward(
        self,
        chunks: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        request: bool,
    ) -> None:
        while True:
            due, data = await chunks.get()
            if not data:
                return
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)  # the injected delay
            await self._open.wait()  # blackholed: hold the data until the network heals
            if not request and link.doomed:
                link.close()  # the request ran; its reply is lost with the connection
                return
            writer.write(data)
            await writer.drain()
