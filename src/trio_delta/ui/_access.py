"""Who may use the dashboard, and proof that a form came from it.

The dashboard shows data and changes state, so every request passes the
:class:`Gate`, which asks :class:`Access`, before any page runs. Three ways
in, chosen when it is opened:

* no secret (only allowed on a loopback address): any local browser, but the
  ``Host`` header must name the loopback address itself, or a web page on
  another site could reach it through DNS rebinding;
* an access token: sent as ``Authorization: Bearer``, or typed once into the
  login form, which leaves a session cookie (``HttpOnly``,
  ``SameSite=Strict``) that proves the token without holding it;
* basic-auth credentials, which browsers ask for themselves.

Every POST also carries a CSRF token, derived from a per-process secret, in a
hidden form field, and is refused when the browser says it came from another
site. Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: The session cookie's name.
SESSION_COOKIE = "trio_delta_ui"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A basic-auth user name and password."""

    user: str
    password: str = field(repr=False)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class Decision:
    """What :meth:`Access.check` found: allowed, or the status to answer."""

    allowed: bool
    status: int = 200
    reason: str = ""
    ask_basic: bool = False


class Access:
    """The dashboard's access rule (see the module's docstring)."""

    def __init__(
        self,
        *,
        token: str | None,
        credentials: Credentials | None,
        allowed_hosts: frozenset[str] | None,
    ) -> None:
        self._token = token
        self._credentials = credentials
        self._allowed_hosts = allowed_hosts
        self._secret = secrets.token_bytes(32)

    @property
    def open_to_local_browsers(self) -> bool:
        return self._token is None and self._credentials is None

    @property
    def uses_token(self) -> bool:
        return self._token is not None

    def _derive(self, purpose: str) -> str:
        return hmac.new(self._secret, purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def csrf_token(self) -> str:
        return self._derive("csrf")

    @property
    def session_value(self) -> str:
        """The cookie a correct login leaves (not the token itself)."""
        return self._derive("session")

    def token_matches(self, token: str) -> bool:
        return self._token is not None and _equal(token, self._token)

    def check(self, headers: dict[str, str], cookies: dict[str, str]) -> Decision:
        host = headers.get("host", "")
        if self._allowed_hosts is not None and _host_only(host) not in self._allowed_hosts:
            return Decision(False, 421, f"this dashboard does not answer for host {host!r}")
        if self.open_to_local_browsers:
            return Decision(True)
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if self._token is not None:
            if scheme.lower() == "bearer" and _equal(value.strip(), self._token):
                return Decision(True)
            if _equal(cookies.get(SESSION_COOKIE, ""), self.session_value):
                return Decision(True)
            return Decision(False, 401, "an access token is required")
        assert self._credentials is not None
        if scheme.lower() == "basic" and self._basic_matches(value.strip()):
            return Decision(True)
        return Decision(False, 401, "credentials are required", ask_basic=True)

    def _basic_matches(self, value: str) -> bool:
        assert self._credentials is not None
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both compared, always: the time taken tells nothing of which failed.
        same_user = _equal(user, self._credentials.user)
        same_password = _equal(password, self._credentials.password)
        return same_user and same_password

    def post_allowed(self, headers: dict[str, str], form_token: str) -> bool:
        """A POST is ours: same-site by the browser's word, and the form's
        CSRF token is right."""
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        return _equal(form_token, self.csrf_token)


def _host_only(host: str) -> str:
    """``host`` without its port (``[::1]:8080`` -> ``[::1]``)."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def loopback_hosts(host: str) -> frozenset[str]:
    """The ``Host`` values a dashboard bound to loopback ``host`` accepts."""
    names = {"localhost", "127.0.0.1", "[::1]"}
    names.add(f"[{host}]" if ":" in host else host)
    return frozenset(names)


#: On every response, refusals included.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class Gate:
    """Answers every HTTP request :class:`Access` refuses, before any page
    runs; adds the security headers to every response."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the dashboard has none: refused unread
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        headers = {k.lower(): v for k, v in request.headers.items()}
        decision = self._access.check(headers, dict(request.cookies))
        root = scope.get("root_path", "")
        path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
        # The sign-in form and the style sheet and script must reach a
        # browser that has not signed in yet; nothing else does.
        exempt = decision.status == 401 and (path == "/login" or path.startswith("/static/"))
        if decision.allowed or exempt:

            async def secure(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = list(message.get("headers", [])) + [
                        (k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                    ]
                await send(message)

            await self._app(scope, receive, secure)
            return
        if decision.ask_basic:
            response: Response = PlainTextResponse(
                decision.reason,
                status_code=401,
                headers={"www-authenticate": 'Basic realm="trio-delta", charset="UTF-8"'},
            )
        elif decision.status == 401:
            response = HTMLResponse(
                f"<!doctype html><title>trio-delta: sign in</title>"
                f"<p>{html.escape(decision.reason)}: "
                f'<a href="{html.escape(root)}/login">sign in</a></p>',
                status_code=401,
            )
        else:
            response = PlainTextResponse(decision.reason, status_code=decision.status)
        for key, value in SECURITY_HEADERS.items():
            response.headers[key] = value
        await response(scope, receive, send)
