"""The dashboard's protections: HTTP basic auth (standalone, `JOBD_WEB_PASSWORD`), security headers,
and the checks that make its actions (POST) safe against cross-site request forgery.

CSRF: every page sets a random token in a cookie (`SameSite=Strict`, `HttpOnly`, path = where the
dashboard is mounted) and puts the same token in a hidden field of each form. A POST is accepted
only when the field matches the cookie (a page of another site can neither read the cookie nor
make the browser send it), and when its `Origin` (or, without one, its `Referer`) names this
host. Both checks hold behind a TLS-terminating proxy: only the host part is compared.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "jobd_csrf"
CSRF_FIELD = "csrf"
FLASH_COOKIE = "jobd_flash"
USER_KEY = "jobd.user"
"""Where the basic-auth user is kept in the ASGI scope, for the action log."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


class Guard:
    """ASGI middleware: basic auth (when `credentials` are given) and the security headers."""

    def __init__(self, app: ASGIApp, credentials: tuple[str, str] | None) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.credentials is not None:
            user = self._user(Headers(scope=scope).get("authorization", ""))
            if user is None:
                response = PlainTextResponse(
                    "jobd dashboard: sign in (HTTP basic auth)",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="jobd", charset="UTF-8"'},
                )
                await response(scope, receive, _with_headers(send))
                return
            scope[USER_KEY] = user
        await self.app(scope, receive, _with_headers(send))

    def _user(self, header: str) -> str | None:
        """The user name if `header` carries the right credentials (compared in constant time)."""
        assert self.credentials is not None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected_user, expected_password = self.credentials
        user_ok = hmac.compare_digest(user.encode(), expected_user.encode())
        password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
        return user if user_ok and password_ok else None


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS:
                if name.decode() not in headers:
                    headers.append(name.decode(), value.decode())
        await send(message)

    return sending


# -- CSRF -------------------------------------------------------------------------------------


def cookie_path(request: Request) -> str:
    """Where the dashboard is mounted: its cookies are sent to its pages only."""
    return str(request.scope.get("root_path") or "") or "/"


def csrf_token(request: Request) -> tuple[str, bool]:
    """The session's token and whether it is new (then the response must set the cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if 32 <= len(current) <= 128 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, token, path=cookie_path(request), httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def same_origin(request: Request) -> bool:
    """True when the request's Origin (else its Referer, if any) names the host it was sent to."""
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host
    referer = request.headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc.lower() == host
    return True  # neither header: not a browser's cross-site form; the token still decides


def csrf_problem(request: Request, submitted: str) -> str | None:
    """Why a POST must be refused, or None when it carries this session's token from this site."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie:
        return "no session token: reload the page and try again"
    if not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        return "the form's token does not match this session: reload the page and try again"
    if not same_origin(request):
        return "the request came from another site"
    return None


# -- flash messages and who acted -------------------------------------------------------------


def set_flash(request: Request, response: Response, kind: str, message: str) -> None:
    """A one-time message for the next page (what an action did)."""
    data = json.dumps({"kind": kind, "text": message[:2000]}).encode()
    response.set_cookie(
        FLASH_COOKIE, base64.urlsafe_b64encode(data).decode(), path=cookie_path(request),
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip


def take_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        document: Any = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return {"kind": str(document["kind"]), "text": str(document["text"])}
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def clear_flash(request: Request, response: Response) -> None:
    response.delete_cookie(FLASH_COOKIE, path=cookie_path(request))


def actor(request: Request) -> str:
    """Who sent the request, as far as the dashboard knows: the basic-auth user, or the user an
    authentication middleware of the host app put into the scope, and the client address."""
    user: str | None = request.scope.get(USER_KEY)
    scoped = request.scope.get("user")
    if user is None and scoped is not None and getattr(scoped, "is_authenticated", False):
        user = str(getattr(scoped, "display_name", "") or scoped)
    address = request.client.host if request.client else "unknown address"
    return f"{user or 'anonymous'} from {address}"
