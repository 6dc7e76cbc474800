"""`mesh stream`: a member's file over http on 127.0.0.1, for players (issue 21).

Theory of operation. The daemon runs one aiohttp server on a random loopback port, started
at the first `mesh stream`. Each stream gets a URL with a random token (128 bits): only
who was given the URL (the user who could ask the daemon through its 0700 socket) can read
through it, not other local users. A request opens the file as the mount does
(node/opened.py: borrowed under the lender's policy, reads served from verified chunks as
they arrive, chunks being read first) and answers a `Range` request with 206 and the part
asked for. aiohttp does the protocol; this module only says what to send.
"""

from __future__ import annotations

import logging
import mimetypes
import secrets
import socket
import urllib.parse
from typing import TYPE_CHECKING

from aiohttp import web

from mesh.core.errors import MeshError, NotFoundError, PeerUnavailableError, RefusedError
from mesh.core.mount_tree import Listed

if TYPE_CHECKING:
    from mesh.node.opened import OpenedFiles

log = logging.getLogger(__name__)
_PIECE = 1 << 20  # bytes read and sent at a time
_HOST = "127.0.0.1"


class Streams:
    def __init__(self, opened: OpenedFiles) -> None:
        self._opened = opened
        self._streams: dict[str, Listed] = {}
        self._runner: web.AppRunner | None = None
        self._port = 0

    async def url_for(self, listed: Listed) -> str:
        """A URL on 127.0.0.1 that serves `listed` (the server starts with the first)."""
        if self._runner is None:
            app = web.Application()
            app.router.add_get("/{token}/{name}", self._serve)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((_HOST, 0))
            self._port = listener.getsockname()[1]
            await web.SockSite(runner, listener).start()
            self._runner = runner
            log.info("streaming on http://%s:%d", _HOST, self._port)
        token = secrets.token_urlsafe(16)
        self._streams[token] = listed
        name = urllib.parse.quote(listed.path.rsplit("/", 1)[-1])
        return f"http://{_HOST}:{self._port}/{token}/{name}"

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        listed = self._streams.get(request.match_info["token"])
        if listed is None:
            raise web.HTTPNotFound(text="no such stream\n")
        size = listed.size
        try:
            wanted = request.http_range
        except ValueError:
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={"Content-Range": f"bytes */{size}"}
            ) from None
        start, stop = _bounds(wanted, size)
        if start >= size > 0 or start > stop:
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        try:
            handle = await self._opened.open(listed)
        except MeshError as exc:
            raise _http_error(exc) from exc
        try:
            partial = "Range" in request.headers
            response = web.StreamResponse(status=206 if partial else 200)
            response.content_length = stop - start
            response.content_type = (
                mimetypes.guess_type(listed.path)[0] or "application/octet-stream"
            )
            response.headers["Accept-Ranges"] = "bytes"
            response.last_modified = listed.mtime_ns / 1e9
            if partial:
                response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
            try:
                # The first piece is read before the headers go: an open that works but a
                # read that cannot is still an error status, not a cut-off body.
                first = await self._opened.read(handle.number, start, min(_PIECE, stop - start))
            except MeshError as exc:
                raise _http_error(exc) from exc
            await response.prepare(request)
            offset = start
            data = first
            while True:
                await response.write(data)
                offset += len(data)
                if offset >= stop or not data:
                    break
                try:
                    data = await self._opened.read(
                        handle.number, offset, min(_PIECE, stop - offset)
                    )
                except MeshError as exc:
                    # Headers are sent: all a server can do is cut the body short.
                    log.warning("stream of %s stopped at byte %d: %s", listed.path, offset, exc)
                    if request.transport is not None:
                        request.transport.close()
                    break
            await response.write_eof()
            return response
        finally:
            await self._opened.close(handle.number)


def _bounds(wanted: slice, size: int) -> tuple[int, int]:
    """[start, stop) of a Range aiohttp parsed into a slice (negative start: a suffix)."""
    start, stop = wanted.start, wanted.stop
    if start is None and stop is None:
        return 0, size
    if start is not None and start < 0:
        return max(0, size + start), size
    start = start or 0
    stop = size if stop is None else min(stop, size)
    return start, stop


def _http_error(exc: MeshError) -> web.HTTPException:
    text = f"{exc}\n"
    if isinstance(exc, NotFoundError):
        return web.HTTPNotFound(text=text)
    if isinstance(exc, RefusedError):
        return web.HTTPForbidden(text=text)
    if isinstance(exc, PeerUnavailableError):
        return web.HTTPGatewayTimeout(text=text)
    return web.HTTPInternalServerError(text=text)


__all__ = ["Streams"]
