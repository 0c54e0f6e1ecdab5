"""An access token in front of the viewer, for serving it beyond this machine.

viser has no authentication: anyone who reaches its port watches and controls the simulation.
With a token, viser listens on 127.0.0.1 only, and a small gate listens on the address the user
asked for. The gate answers 403 to any request without the token, and passes the rest through,
page and WebSocket alike, to viser:

- the first request carries it in the URL (``http://host:port/?token=...``, the URL printed);
- the gate then sets it as a cookie (HttpOnly, SameSite=Strict) that the page's later requests
  and its WebSocket handshake carry.

Tokens are compared in constant time. The gate does not encrypt: across an untrusted network,
an SSH tunnel (``ssh -L``) or a TLS proxy still belongs in front.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import secrets
import threading
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

COOKIE = "embodied_viewer_token"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Loopback to viser never goes through a proxy, whatever ``http_proxy`` the user has set."""
MAX_MESSAGE = 50 * 1024 * 1024
"""viser's own WebSocket message limit."""


def _viser_protocol(connection: ServerConnection, offered: list[str]) -> str | None:
    """Accept the viser client's versioned subprotocol, as viser itself does."""
    return next((p for p in offered if p.startswith("viser-v")), None)


def new_token() -> str:
    """A random URL-safe token (128 bits)."""
    return secrets.token_urlsafe(16)


class TokenGate:
    """Serve ``host:port``, letting requests that carry ``token`` through to viser on ``127.0.0.1:inner_port``."""

    def __init__(self, token: str, host: str, port: int, inner_port: int) -> None:
        if not token or any(c.isspace() or c in ";," for c in token):
            raise ValueError("an access token must be non-empty, without spaces, commas or semicolons")
        self.token = token
        self.inner_port = inner_port
        self.refused = 0
        """Requests answered 403 so far."""
        self._loop = asyncio.new_event_loop()
        self._stopped: asyncio.Event | None = None
        ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(host, port, ready), name="viewer-gate", daemon=True)
        self._thread.start()
        ready.wait(timeout=30)
        if self._error is not None:
            raise self._error

    # ------------------------------------------------------------------ serving
    def _run(self, host: str, port: int, ready: threading.Event) -> None:
        async def main() -> None:
            self._stopped = asyncio.Event()
            server = None
            for attempt in range(port, port + 100):  # like viser: the next free port if this one is taken
                try:
                    server = await serve(
                        self._relay, host, attempt, process_request=self._check, max_size=MAX_MESSAGE,
                        compression=None, select_subprotocol=_viser_protocol,
                    )  # fmt: skip
                    break
                except OSError as err:
                    self._error = OSError(f"the viewer's access gate cannot listen on {host}:{attempt}: {err}")
                    if port == 0:
                        break
            if server is None:
                ready.set()
                return
            self._error = None
            self.port = int(server.sockets[0].getsockname()[1])
            ready.set()
            await self._stopped.wait()
            server.close()
            await server.wait_closed()

        self._loop.run_until_complete(main())

    def _token_of(self, request: Request) -> tuple[str | None, bool]:
        """The token a request carries and whether it came in the URL (then the cookie is set)."""
        query = parse_qs(urlsplit(request.path).query).get("token")
        if query:
            return query[0], True
        cookie = SimpleCookie(request.headers.get("Cookie", ""))
        return (cookie[COOKIE].value if COOKIE in cookie else None), False

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        given, from_url = self._token_of(request)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            self.refused += 1
            body = b"403: this viewer needs its access token: open the URL `embodied view` printed (?token=...)\n"
            return Response(http.HTTPStatus.FORBIDDEN, "Forbidden", Headers({"Content-Type": "text/plain"}), body)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # on to _relay
        response = self._fetch(urlsplit(request.path).path or "/", request.headers.get("Accept-Encoding", ""))
        if from_url:
            response.headers["Set-Cookie"] = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        return response

    def _fetch(self, path: str, accept_encoding: str) -> Response:
        """The page's files, from viser on loopback."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.inner_port}{path}")
        if accept_encoding:
            request.add_header("Accept-Encoding", accept_encoding)
        try:
            with _DIRECT.open(request, timeout=30) as reply:
                status, headers, body = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as err:
            status, headers, body = err.code, err.headers, err.read()
        keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "content-encoding")}
        keep["Content-Length"] = str(len(body))
        return Response(status, http.HTTPStatus(status).phrase, Headers(keep), body)

    async def _relay(self, client: ServerConnection) -> None:
        """Pass WebSocket messages both ways between the browser and viser until either side closes."""
        protocols = [client.subprotocol] if client.subprotocol else None
        async with connect(
            f"ws://127.0.0.1:{self.inner_port}/",
            subprotocols=protocols,
            max_size=MAX_MESSAGE,
            compression=None,
            proxy=None,  # loopback, never through the user's proxy
        ) as upstream:

            async def pump(source: object, sink: object) -> None:
                try:
                    async for message in source:  # type: ignore[attr-defined]
                        await sink.send(message)  # type: ignore[attr-defined]
                except ConnectionClosed:
                    pass

            tasks = [asyncio.create_task(pump(client, upstream)), asyncio.create_task(pump(upstream, client))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()

    def stop(self) -> None:
        if self._stopped is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)
