"""The dashboard's pages and actions, as a Starlette application.

Every read and change goes through :class:`~trio_delta._admin.Admin`, the
command line's administration, so the two never disagree. Pages are
rendered on the server (Jinja2, autoescaped); the overview refreshes its
own section by fetching it again, with no script from elsewhere.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .._admin import STATES, Admin, relative_time, selection
from .._config import check_name
from .._errors import ConfigError
from .._objects import check_kind
from .._store.params import Change, Pause, ResourceFilter
from ._access import SESSION_COOKIE, Access

#: Rows on one page of the resource list.
PAGE_SIZE = 50
#: Minutes the throughput chart covers.
CHART_MINUTES = 15

#: Actions on resources, by the name forms use (cancel is a delete that
#: also stops running work, which every delete does).
RESOURCE_ACTIONS: dict[str, Change] = {
    "retry": Change.RETRY,
    "invalidate": Change.INVALIDATE,
    "delete": Change.DELETE,
    "cancel": Change.DELETE,
}
PAUSE_ACTIONS = ("pause", "resume")

_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class BadInput(Exception):
    """A request parameter that cannot be used: answered with 400."""


@dataclass(frozen=True, slots=True)
class Settings:
    read_only: bool
    refresh_seconds: float


class _Timer:
    """Database time spent on a request, for the ``Server-Timing`` header."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def __call__(self, awaitable: Awaitable[Any]) -> Any:
        start = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.seconds += time.perf_counter() - start


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trio_delta.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = _pretty
    env.filters["query"] = _query
    return env


def _query(params: Mapping[str, Any]) -> str:
    """A query string of the parameters that have a value."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _filter_fields(params: Mapping[str, str]) -> dict[str, str]:
    return {k: params.get(k, "").strip() for k in ("kind", "namespace", "state", "tag", "q")}


def parse_filter(params: Mapping[str, str]) -> tuple[ResourceFilter, dict[str, str]]:
    """The resource filter of a page's or form's fields, checked."""
    fields = _filter_fields(params)
    try:
        kind = check_kind(fields["kind"], error=ConfigError) if fields["kind"] else None
        namespace = check_name("namespace", fields["namespace"]) if fields["namespace"] else None
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    if fields["state"] and fields["state"] not in STATES:
        raise BadInput(f"unknown state {fields['state']!r}")
    if len(fields["tag"]) > 255 or len(fields["q"]) > 255:
        raise BadInput("a tag or id text is at most 255 characters")
    object_id = params.get("id")
    if object_id is not None and kind is None:
        raise BadInput("an object id needs its kind")
    flt = selection(
        kind,
        namespace,
        [fields["state"]] if fields["state"] else None,
        [fields["tag"]] if fields["tag"] else None,
        [object_id] if object_id is not None else None,
    )
    if fields["q"]:
        flt = ResourceFilter(
            flt.kind, flt.namespace, flt.states, flt.tags, flt.object_ids, id_contains=fields["q"]
        )
    return flt, fields


def _after(params: Mapping[str, str]) -> int | None:
    raw = params.get("after", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadInput("after must be a resource id")
    return int(raw)


class Dashboard:
    """The pages, bound to one :class:`Admin`."""

    def __init__(self, admin: Admin, access: Access, settings: Settings) -> None:
        self._admin = admin
        self._access = access
        self._settings = settings
        self._env = _environment()
        self._overview_lock = trio.Lock()
        self._overview_cache: tuple[float, dict[str, Any]] | None = None
        # A little under the refresh: a browser's next poll finds new counts.
        self._overview_ttl = settings.refresh_seconds * 0.8

    # -- rendering --------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        template: str,
        timer: _Timer,
        http_status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self._env.get_template(template).render(
            root=request.scope.get("root_path", ""),
            database=self._admin.database,
            schema=self._admin.schema,
            read_only=self._settings.read_only,
            refresh_ms=int(self._settings.refresh_seconds * 1000),
            csrf=self._access.csrf_token,
            states=STATES,
            **context,
        )
        response = HTMLResponse(html, status_code=http_status)
        response.headers["server-timing"] = f"db;dur={timer.seconds * 1000:.2f}"
        return response

    def _error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self._page(request, "error.html", _Timer(), http_status=status, message=message)

    # -- pages ------------------------------------------------------------------------

    async def _overview_context(self, timer: _Timer) -> dict[str, Any]:
        # Counting every resource is a pass over the table (half a second
        # at a million rows): one count serves every viewer for a refresh
        # interval, however many browsers poll.
        async with self._overview_lock:
            cached = self._overview_cache
            if cached is None or trio.current_time() - cached[0] >= self._overview_ttl:
                cached = (trio.current_time(), await timer(self._count_overview()))
                self._overview_cache = cached
        return cached[1]

    async def _count_overview(self) -> dict[str, Any]:
        status = await self._admin.status()
        namespaces = sorted({group["namespace"] for group in status["resources"]})
        activity = await self._admin.activity(CHART_MINUTES, namespaces)
        peak = max((m["synced"] for m in activity["synced_per_minute"]), default=0)
        return {
            "status": status,
            "activity": activity,
            "peak": peak,
            "ago": functools.partial(relative_time, status["now"]),
        }

    async def overview(self, request: Request) -> Response:
        timer = _Timer()
        return self._page(request, "overview.html", timer, **await self._overview_context(timer))

    async def overview_section(self, request: Request) -> Response:
        timer = _Timer()
        return self._page(request, "_overview.html", timer, **await self._overview_context(timer))

    async def resources(self, request: Request) -> Response:
        timer = _Timer()
        params = dict(request.query_params)
        flt, fields = parse_filter(params)
        after = _after(params)
        page_filter = ResourceFilter(
            flt.kind,
            flt.namespace,
            flt.states,
            flt.tags,
            flt.object_ids,
            after_id=after,
            limit=PAGE_SIZE + 1,
            id_contains=flt.id_contains,
        )
        rows = await timer(self._admin.list_resources(page_filter))
        kinds = await timer(self._admin.known_kinds())
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        return self._page(
            request,
            "resources.html",
            timer,
            rows=rows,
            kinds=kinds,
            fields=fields,
            after=after,
            next_after=rows[-1]["id"] if more else None,
            actions=[a for a in RESOURCE_ACTIONS if a != "cancel"],
        )

    async def resource(self, request: Request) -> Response:
        timer = _Timer()
        kind, object_id = request.query_params.get("kind"), request.query_params.get("id")
        if not kind or object_id is None:
            raise BadInput("a resource page needs kind and id")
        row = await timer(self._admin.get_resource(kind, object_id))
        if row is None:
            return self._error(request, 404, f"no resource {object_id!r} of kind {kind!r}")
        actions = [a for a, change in RESOURCE_ACTIONS.items() if _applies(change, row["state"])]
        if row["state"] != "pending":
            actions = [a for a in actions if a != "cancel"]
        else:
            actions = [a for a in actions if a != "delete"]
        return self._page(request, "resource.html", timer, row=row, actions=actions)

    # -- actions ----------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        if self._settings.read_only:
            return self._error(request, 403, "this dashboard is read-only")
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        if not self._access.post_allowed(dict(request.headers), form.get("csrf", "")):
            return self._error(request, 403, "this form did not come from this dashboard")
        action = form.get("action", "")
        if action in PAUSE_ACTIONS:
            return await self._pause(request, form, action)
        change = RESOURCE_ACTIONS.get(action)
        if change is None:
            raise BadInput(f"unknown action {action!r}")
        flt, fields = parse_filter(form)
        timer = _Timer()
        target = flt.narrowed(change.states)
        if form.get("confirmed") != "yes":
            counts = await timer(self._admin.count(target))
            return self._page(
                request,
                "confirm.html",
                timer,
                action=action,
                fields=fields,
                object_id=form.get("id"),
                counts=counts,
                total=sum(counts.values()),
                acts_on=[s.value for s in change.states],
            )
        changed = await timer(self._admin.change(change, flt))
        self._overview_cache = None  # its counts are out of date now
        back = (
            f"resource?{urlencode({'kind': flt.kind, 'id': form['id']})}"
            if form.get("id") is not None and flt.kind is not None
            else "resources?" + urlencode({k: v for k, v in fields.items() if v})
        )
        return self._page(request, "done.html", timer, action=action, changed=changed, back=back)

    async def _pause(self, request: Request, form: Mapping[str, str], action: str) -> Response:
        fields = _filter_fields(form)
        try:
            kind = check_kind(fields["kind"], error=ConfigError) if fields["kind"] else None
            namespace = (
                check_name("namespace", fields["namespace"]) if fields["namespace"] else None
            )
        except ConfigError as exc:
            raise BadInput(str(exc)) from None
        if kind is None and namespace is None:
            raise BadInput("pause or resume a kind, a namespace, or both")
        timer = _Timer()
        if form.get("confirmed") != "yes":
            return self._page(
                request, "confirm_pause.html", timer, action=action, kind=kind, namespace=namespace
            )
        pause = Pause(kind, namespace)
        done = await timer(
            self._admin.pause(pause, by="trio-delta ui")
            if action == "pause"
            else self._admin.resume(pause)
        )
        self._overview_cache = None
        return self._page(
            request,
            "done_pause.html",
            timer,
            action=action,
            kind=kind,
            namespace=namespace,
            done=done,
        )

    # -- login ------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET" or not self._access.uses_token:
            return self._page(request, "login.html", _Timer(), failed=False)
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        if not self._access.token_matches(form.get("token", "")):
            return self._page(request, "login.html", _Timer(), http_status=401, failed=True)
        response = RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self._access.session_value,
            httponly=True,
            samesite="strict",
            path=f"{request.scope.get('root_path', '')}/",
        )
        return response


def _applies(change: Change, state: str) -> bool:
    return state in {s.value for s in change.states}


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(dashboard: Dashboard, handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except BadInput as exc:
            return dashboard._error(request, 400, str(exc))  # pyright: ignore[reportPrivateUsage]

    return run


class _Gate:
    """Answers every HTTP request :class:`Access` refuses, before any page
    runs; adds the security headers to every response."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
                        (k.encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()
                    ]
                await send(message)

            await self._app(scope, receive, secure)
            return
        if decision.ask_basic:
            response: Response = Response(
                decision.reason,
                status_code=401,
                headers={"www-authenticate": 'Basic realm="trio-delta", charset="UTF-8"'},
            )
        elif decision.status == 401:
            response = HTMLResponse(
                f"<!doctype html><title>trio-delta: sign in</title><p>{decision.reason}: "
                f'<a href="{root}/login">sign in</a></p>',
                status_code=401,
            )
        else:
            response = Response(decision.reason, status_code=decision.status)
        for key, value in _SECURITY_HEADERS.items():
            response.headers[key] = value
        await response(scope, receive, send)


def build_app(admin: Admin, access: Access, settings: Settings) -> ASGIApp:
    """The dashboard for ``admin``'s database, behind ``access``."""
    dashboard = Dashboard(admin, access, settings)
    routes = [
        Route("/", _guarded(dashboard, dashboard.overview)),
        Route("/fragments/overview", _guarded(dashboard, dashboard.overview_section)),
        Route("/resources", _guarded(dashboard, dashboard.resources)),
        Route("/resource", _guarded(dashboard, dashboard.resource)),
        Route("/actions", _guarded(dashboard, dashboard.act), methods=["POST"]),
        Route("/login", _guarded(dashboard, dashboard.login), methods=["GET", "POST"]),
        Mount("/static", StaticFiles(packages=[("trio_delta.ui", "static")]), name="static"),
    ]
    return _Gate(Starlette(routes=routes), access)
