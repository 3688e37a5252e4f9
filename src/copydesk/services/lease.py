"""`ServerLease`: a server's URL for a `with` block, the server started for the block when none runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from copydesk.services.process import ManagedServer


class ServerLease:
    """`with` or `async with`: yields a server's URL, starting a server for the block if needed.

    `resolve()` returns the URL and, when it had to start one, the
    ManagedServer to stop afterwards. The async form runs the blocking start
    in a thread; a start cancelled half-way still stops what it started.
    """

    def __init__(self, resolve: Callable[[], tuple[str, ManagedServer | None]]) -> None:
        self._resolve = resolve
        self._server: ManagedServer | None = None
        self.url: str | None = None

    @property
    def server(self) -> ManagedServer | None:
        """The server started for this block, or None when an existing one is used."""
        return self._server

    def __enter__(self) -> str:
        if self.url is not None:
            raise RuntimeError("this server lease is already in use")
        url, server = self._resolve()
        self.url, self._server = url, server
        return url

    def __exit__(self, *exc_info: object) -> None:
        server, self._server, self.url = self._server, None, None
        if server is not None:
            server.stop()

    async def __aenter__(self) -> str:
        task = asyncio.ensure_future(asyncio.to_thread(self.__enter__))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The thread goes on; stop whatever it starts once it is done.
            def _cleanup(done: asyncio.Future[str]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self.__exit__(None, None, None)

            task.add_done_callback(_cleanup)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.__exit__, *exc_info)
