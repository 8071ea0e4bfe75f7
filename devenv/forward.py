"""A TCP forwarder on a fixed loopback port, for taking a real server away and bringing it back.

Tests and benchmarks put it in front of a real API server or git daemon: ``stop`` closes the
port and every open connection, so clients get "connection refused" exactly as from a stopped
process; ``start`` listens again on the same port. The servers behind it are shared by many
tests and cannot be stopped for one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from devenv.process import free_port


class TcpForwarder:
    """A TCP forwarder on a fixed loopback port: stopping it refuses connections, exactly as
    a stopped API server does; starting it again on the same port brings the server back."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._streams):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._streams.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._streams.difference_update((writer, up_writer))


class ThreadedForwarder:
    """A ``TcpForwarder`` on an event loop of its own thread, for servers that the test's own
    loop calls with blocking clients (a blocking call there would starve an in-loop
    forwarder). ``start`` and ``stop`` block until done; they may be awaited from any loop."""

    def __init__(self, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._forwarder = TcpForwarder(target_port)
        self.port = self._forwarder.port

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=30)

    async def start(self) -> None:
        self._run(self._forwarder.start())

    async def stop(self) -> None:
        self._run(self._forwarder.stop())

    def close(self) -> None:
        """Stop forwarding and end the thread."""
        self._run(self._forwarder.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
