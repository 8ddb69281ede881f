"""What every request passes before the API sees it.

* **Host**: a DNS-rebinding page reaches the loopback daemon under its own name
  (`Host: evil.example:8765`); only the names the daemon is served under are accepted.
* **Browser origin**: a web page on another site can make the browser POST a form to
  127.0.0.1; requests a browser marks as cross-origin (`Origin`, `Sec-Fetch-Site`) are
  refused, except following a link to the page. Clients that are not browsers (the Inkscape
  extension, curl) send neither header and are not affected.
* **Token** (when the daemon has one): `Authorization: Bearer …` (any case of "Bearer"),
  `X-Clipascene-Token`, or `?token=` for the web page's links; the query parameter is taken
  out of the request before anything can log it.
* **Body size**: refused from `Content-Length`, and counted while the body streams in, so an
  oversized upload is never spooled to disk.
* **Framing**: every answer says `X-Frame-Options: DENY` and `Content-Security-Policy:
  frame-ancestors 'none'`, so no page can show the web page in a frame and clickjack it.
"""

from __future__ import annotations

import secrets
from urllib.parse import unquote_plus, urlsplit

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Names of this machine's loopback interface a local browser or client may use.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: Room for the form's other fields and the multipart framing beyond the image itself.
FORM_OVERHEAD_BYTES = 2**20


def host_name(value: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' and '::1' -> '::1', 'Example.org' ->
    'example.org'."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):  # a bare IPv6 address
        return value
    try:
        return urlsplit(f"//{value}").hostname or ""
    except ValueError:  # e.g. an unbalanced '['
        return "\0invalid"


class Guard:
    """ASGI middleware. allowed_hosts: lower-case host names, or None for any Host."""

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: tuple[str, ...] | None,
                 max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query_token = _take_query_token(scope)
        refusal = (self._host_refusal(headers) or _origin_refusal(scope, headers)
                   or self._token_refusal(headers, query_token)
                   or self._length_refusal(headers))
        if refusal is not None:
            status, detail = refusal
            await JSONResponse({"detail": detail}, status_code=status)(scope, receive,
                                                                        _unframeable(send))
            return
        await self.app(scope, self._counting(receive), _unframeable(send))

    def _host_refusal(self, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host")
        if self.allowed_hosts is None or host is None or host_name(host) in self.allowed_hosts:
            return None
        return 403, (f"this backend is not served under the name {host[:100]!r} (a web page may "
                     "be trying to reach it through DNS rebinding); use "
                     f"http://{self.allowed_hosts[0]}:PORT, or start it with --public-name.")

    def _token_refusal(self, headers: Headers, query_token: str) -> tuple[int, str] | None:
        if self.token is None:
            return None
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        given = (credentials.strip() if scheme.lower() == "bearer" else "") \
            or headers.get("x-clipascene-token", "") or query_token
        if secrets.compare_digest(given.encode(), self.token.encode()):
            return None
        return 401, "a valid token is needed: send it as 'Authorization: Bearer TOKEN'."

    def _length_refusal(self, headers: Headers) -> tuple[int, str] | None:
        declared = headers.get("content-length")
        if declared is None:
            return None
        if not declared.isdigit():
            return 400, "the Content-Length header is not a number."
        if int(declared) > self.max_body_bytes:
            return 413, self._too_large()
        return None

    def _too_large(self) -> str:
        return (f"the request is larger than {self.max_body_bytes // 2**20} MB; "
                "send a smaller image.")

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI re-raises an HTTPException met while it reads the body.
                    raise HTTPException(413, self._too_large())
            return message

        return counted


#: No page may show the service in a frame (its Cancel buttons could be clickjacked).
_NO_FRAMING = [(b"x-frame-options", b"DENY"),
               (b"content-security-policy", b"frame-ancestors 'none'")]


def _unframeable(send: Send) -> Send:
    async def sending(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *_NO_FRAMING]}
        await send(message)

    return sending


def _take_query_token(scope: Scope) -> str:
    """The `token` query parameter's value, removed from the scope so no access log shows it."""
    parts = scope.get("query_string", b"").split(b"&")
    kept = [part for part in parts if part.split(b"=", 1)[0] != b"token"]
    if len(kept) == len(parts):
        return ""
    scope["query_string"] = b"&".join(kept)
    token = next(part for part in parts if part.split(b"=", 1)[0] == b"token")
    return unquote_plus(token.partition(b"=")[2].decode("latin-1"))


def _netloc(origin: str) -> str | None:
    """The host and port of an Origin header; None for a malformed one (`http://[::1`),
    which is then no origin of ours."""
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return None


def _origin_refusal(scope: Scope, headers: Headers) -> tuple[int, str] | None:
    """Requests a browser sends on behalf of another site's page (or a sandboxed one)."""
    site = headers.get("sec-fetch-site", "").lower()
    origin = headers.get("origin")
    navigation = (scope["method"] in ("GET", "HEAD")
                  and headers.get("sec-fetch-mode", "").lower() == "navigate")
    foreign = site in ("cross-site", "same-site") or (
        origin is not None and (origin == "null" or _netloc(origin)
                                != headers.get("host", "").lower()))
    if not foreign or navigation:
        return None
    return 403, ("requests from other web pages are refused; use this backend's own page, "
                 "the Inkscape extension or a command-line client.")
