"""The dashboard's pages and actions, as a Starlette application.

Every read and change goes through :class:`~trio_delta._admin.Admin`, the
command line's administration, so the two never disagree. Pages are
rendered on the server (Jinja2, autoescaped); the overview refreshes its
own section by fetching it again, with no script from elsewhere.
"""

from __future__ import annotations

import base64
import dataclasses
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
from starlette.types import ASGIApp

from .._admin import STATES, Admin, relative_time, selection
from .._config import check_name
from .._errors import ConfigError
from .._objects import check_kind
from .._store.params import Change, Pause, ResourceFilter
from .._types import ResourceState
from ._access import SESSION_COOKIE, Access, Gate

#: Rows on one page of the resource list.
PAGE_SIZE = 50
#: Minutes the throughput chart covers.
CHART_MINUTES = 15

#: Actions on resources, by the name forms use: the change, and the states
#: it acts on from here. Cancel is a delete of running work only (a delete
#: tells running work to stop; a cancel must not delete a resource whose
#: work finished meanwhile).
RESOURCE_ACTIONS: dict[str, tuple[Change, tuple[ResourceState, ...]]] = {
    "retry": (Change.RETRY, Change.RETRY.states),
    "invalidate": (Change.INVALIDATE, Change.INVALIDATE.states),
    "delete": (Change.DELETE, Change.DELETE.states),
    "cancel": (Change.DELETE, (ResourceState.PENDING,)),
}
#: The most a form may send: its fields are a filter and a few words.
MAX_FORM_BYTES = 16 * 1024
PAUSE_ACTIONS = ("pause", "resume")
#: How long a sign-in lasts (it also ends when the dashboard restarts).
SESSION_SECONDS = 12 * 3600


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
    env.filters["b64"] = _b64
    return env


def _query(params: Mapping[str, Any]) -> str:
    """A query string of the parameters that have a value."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _filter_fields(params: Mapping[str, str]) -> dict[str, str]:
    return {k: params.get(k, "").strip() for k in ("kind", "namespace", "state", "tag", "q")}


def _kind_and_namespace(fields: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The kind and namespace fields, checked (empty: None)."""
    try:
        kind = check_kind(fields["kind"], error=ConfigError) if fields["kind"] else None
        namespace = check_name("namespace", fields["namespace"]) if fields["namespace"] else None
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    return kind, namespace


def parse_filter(params: Mapping[str, str]) -> tuple[ResourceFilter, dict[str, str]]:
    """The resource filter of a page's or form's fields, checked."""
    fields = _filter_fields(params)
    kind, namespace = _kind_and_namespace(fields)
    if fields["state"] and fields["state"] not in STATES:
        raise BadInput(f"unknown state {fields['state']!r}")
    if len(fields["tag"]) > 255 or len(fields["q"]) > 255:
        raise BadInput("a tag or id text is at most 255 characters")
    object_id = object_id_of(params)
    if object_id is not None and kind is None:
        raise BadInput("an object id needs its kind")
    if any("\x00" in text for text in (fields["tag"], fields["q"], object_id or "")):
        raise BadInput("a tag, id or id text cannot hold a NUL character")
    flt = selection(
        kind,
        namespace,
        [fields["state"]] if fields["state"] else None,
        [fields["tag"]] if fields["tag"] else None,
        [object_id] if object_id is not None else None,
    )
    if fields["q"]:
        flt = dataclasses.replace(flt, id_contains=fields["q"])
    return flt, fields


def object_id_of(params: Mapping[str, str]) -> str | None:
    """The object id a form names: base64 in ``oid`` (a browser would turn
    a line break in a plain hidden field into CRLF), or plain in ``id``."""
    encoded = params.get("oid")
    if encoded is None:
        return params.get("id")
    try:
        return base64.urlsafe_b64decode(encoded.encode("ascii")).decode()
    except (ValueError, UnicodeError):
        raise BadInput("a malformed object id") from None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


def _after(params: Mapping[str, str]) -> int | None:
    raw = params.get("after", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
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
        self._overview_cache: tuple[float, int, dict[str, Any]] | None = None
        self._overview_generation = 0  # moved on by every action
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
            signed_in_with_token=self._access.uses_token,
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
            fresh = (
                cached is not None
                and cached[1] == self._overview_generation
                and trio.current_time() - cached[0] < self._overview_ttl
            )
            if not fresh:
                generation = self._overview_generation
                counted = await timer(self._count_overview())
                # An action while counting: these counts may predate it,
                # so they serve this request only.
                if generation != self._overview_generation:
                    return counted
                cached = (trio.current_time(), generation, counted)
                self._overview_cache = cached
        assert cached is not None
        return cached[2]

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
        if "id" in params or "oid" in params:
            raise BadInput("the list takes no id: a resource's own page is /resource?kind=K&id=ID")
        flt, fields = parse_filter(params)
        after = _after(params)
        page = dataclasses.replace(flt, after_id=after, limit=PAGE_SIZE + 1)
        rows = await timer(self._admin.list_resources(page))
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
            everything=flt.is_everything,
        )

    async def resource(self, request: Request) -> Response:
        timer = _Timer()
        flt, _ = parse_filter(dict(request.query_params))
        if flt.kind is None or flt.object_ids is None:
            raise BadInput("a resource page needs kind and id")
        (object_id,) = flt.object_ids
        row = await timer(self._admin.get_resource(flt.kind, object_id))
        if row is None:
            return self._error(request, 404, f"no resource {object_id!r} of kind {flt.kind!r}")
        actions = [
            a
            for a, (_, states) in RESOURCE_ACTIONS.items()
            if row["state"] in {s.value for s in states}
        ]
        if "cancel" in actions:  # running: a delete would cancel it too, say so
            actions.remove("delete")
        return self._page(request, "resource.html", timer, row=row, actions=actions)

    # -- actions ----------------------------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str]:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BadInput("that form is too large")
        return dict(parse_qsl(body.decode(errors="replace")))

    async def act(self, request: Request) -> Response:
        if self._settings.read_only:
            return self._error(request, 403, "this dashboard is read-only")
        form = await self._form(request)
        if not self._access.post_allowed(dict(request.headers), form.get("csrf", "")):
            return self._error(request, 403, "this form did not come from this dashboard")
        action = form.get("action", "")
        if action in PAUSE_ACTIONS:
            return await self._pause(request, form, action)
        if action not in RESOURCE_ACTIONS:
            raise BadInput(f"unknown action {action!r}")
        change, states = RESOURCE_ACTIONS[action]
        flt, fields = parse_filter(form)
        object_id = flt.object_ids[0] if flt.object_ids else None
        if flt.is_everything and form.get("everything") != "yes":
            raise BadInput("no filter is set: tick 'every resource' to act on all of them")
        target = flt.narrowed(states)
        timer = _Timer()
        counts = await timer(self._admin.count(target))
        total = sum(counts.values())
        # What is applied is what was counted: when the selection grew or
        # shrank since the confirmation page (new resources, state changes,
        # or the same form sent again), it is shown again, not applied.
        expected = form.get("expected")
        if form.get("confirmed") != "yes" or expected != str(total):
            return self._page(
                request,
                "confirm.html",
                timer,
                action=action,
                fields=fields,
                object_id=object_id,
                counts=counts,
                total=total,
                acts_on=[s.value for s in states],
                everything=flt.is_everything,
                changed_since=form.get("confirmed") == "yes",
            )
        changed = await timer(self._admin.change(change, target))
        self._overview_generation += 1  # its counts are out of date now
        back = (
            f"resource?{_query({'kind': flt.kind, 'id': object_id})}"
            if object_id is not None
            else f"resources?{_query(fields)}"
        )
        return self._page(request, "done.html", timer, action=action, changed=changed, back=back)

    async def _pause(self, request: Request, form: Mapping[str, str], action: str) -> Response:
        kind, namespace = _kind_and_namespace(_filter_fields(form))
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
        self._overview_generation += 1
        return self._page(
            request,
            "done_pause.html",
            timer,
            action=action,
            kind=kind,
            namespace=namespace,
            done=done,
        )

    async def logout(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")
        response = RedirectResponse(f"{root}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=f"{root}/")
        return response

    # -- login ------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET" or not self._access.uses_token:
            return self._page(request, "login.html", _Timer(), failed=False)
        form = await self._form(request)
        if not self._access.token_matches(form.get("token", "")):
            return self._page(request, "login.html", _Timer(), http_status=401, failed=True)
        root = request.scope.get("root_path", "")
        response = RedirectResponse(f"{root}/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self._access.session_value,
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=f"{root}/",
        )
        return response


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(dashboard: Dashboard, handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except BadInput as exc:
            return dashboard._error(request, 400, str(exc))  # pyright: ignore[reportPrivateUsage]

    return run


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
        Route("/logout", _guarded(dashboard, dashboard.logout), methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("trio_delta.ui", "static")]), name="static"),
    ]
    return Gate(Starlette(routes=routes), access)
