"""The FastAPI application: the JSON API under ``/api/v1`` (OpenAPI docs at ``/api/docs``) and
the server-rendered pages (:mod:`alignkit.web.pages`), both on one :class:`FeedbackStore`.

What an annotator's requests can reach is deliberately narrow: their own leased tasks (a task
view carries no gold flag, no other people's answers, no aggregate), their drafts, their
progress counts. Everything else is an admin endpoint of a project and answers 403 to anyone
who is not that project's admin. Every store refusal maps to one status code:
not yours -> 403, lease gone -> 409, bad answer -> 422.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alignkit.feedback import quality as q
from alignkit.feedback.config import ProjectConfig, preference_project, sft_project
from alignkit.feedback.export import ExportKind, aggregate_stage, build_records
from alignkit.feedback.models import Annotation, Annotator, Assignment, Guideline, Membership, Project, Task, utcnow
from alignkit.feedback.schemas import InvalidAnswer
from alignkit.feedback.store import (
    FeedbackError,
    FeedbackStore,
    LeaseExpired,
    NotAllowed,
    NotAssigned,
    TooManyPending,
    UnknownAnnotator,
    UnknownTask,
)
from alignkit.feedback.workflow import advance, import_items
from alignkit.web import accounts
from alignkit.web.accounts import User
from alignkit.web.security import SESSION_COOKIE, SESSION_MAX_AGE, RateLimiter, Sessions, new_token, same, token_hash
from alignkit.web.server import settle_heap

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class WebSettings(BaseModel):
    secret_key: str
    secure_cookies: bool = False  # set behind HTTPS so the cookie is never sent in clear
    login_attempts_per_name: int = 5  # failed sign-ins per name per window
    login_attempts_per_ip: int = 30
    login_window_s: float = 300.0
    # Requests run the store's (blocking) calls in this many worker threads at most (anyio's default
    # is 40). One process has one GIL: beyond a few threads, more only queue for it (a thread-switch
    # convoy) and each opens a database connection of its own, whose first statements are slow (a
    # cold backend, statements not yet prepared). Under a burst, 40 threads and 40 fresh connections
    # turned into multi-second stalls for every request in flight (benchmarks/README.md, "Annotation
    # web app under load"); a short queue for 8 threads does not.
    worker_threads: int = Field(8, ge=1, le=200)
    warm_up: bool = True  # at start-up, before the first request (see warm_up)
    freeze_heap: bool = False  # gc.freeze after start-up (alignkit.web.server.settle_heap); `alignkit web` sets it


# -- request bodies --------------------------------------------------------------------------------------
class LoginBody(BaseModel):
    name: str
    password: str


class JoinBody(BaseModel):
    token: str
    name: str | None = None
    password: str | None = None


class NextBody(BaseModel):
    stage: str | None = None


class DraftBody(BaseModel):
    draft: dict[str, Any]


class SubmitBody(BaseModel):
    answer: dict[str, Any]


class ProjectBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    template: Literal["preference", "sft", "custom"] = "preference"
    config: dict[str, Any] | None = None  # the ProjectConfig for template custom
    overlap: int = Field(3, ge=1)
    gold_rate: float = Field(0.1, ge=0, le=1)


class ImportBody(BaseModel):
    rows: list[dict[str, Any]]
    stage: str | None = None
    gold_fraction: float = Field(0.0, ge=0, le=1)
    seed: int = 0


class InviteBody(BaseModel):
    role: Literal["annotator", "reviewer", "admin"] = "annotator"
    status: Literal["auto", "candidate", "active"] = "auto"
    days: float = Field(7.0, gt=0, le=90)


class AnnotatorChange(BaseModel):
    """Changes apply in this project only (the person's membership of it)."""

    status: Literal["candidate", "probation", "active", "excluded", "flagged"] | None = None
    super_rater: bool | None = None
    role: Literal["annotator", "reviewer", "admin"] | None = None


class FlagBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class ResolveBody(BaseModel):
    action: Literal["dismiss", "reopen", "adjudicate"]
    answer: dict[str, Any] | None = None  # adjudicate: the admin's answer, checked like any submit


class QualityRun(BaseModel):
    screen: bool = False
    flag_spammers: bool = False
    super_raters: bool = False


class AggregateBody(BaseModel):
    stage: str
    method: Literal["majority", "dawid_skene"] = "dawid_skene"


class ExportBody(BaseModel):
    kind: ExportKind = "pairs"
    stage: str | None = None
    method: Literal["majority", "dawid_skene"] = "dawid_skene"
    min_agreement: float = 0.0
    min_confidence: float = 0.0


# -- identity ------------------------------------------------------------------------------------------------
def session_data(request: Request) -> dict[str, Any]:
    """The signed session (an anonymous one, with a fresh CSRF token, when there is none)."""
    data = getattr(request.state, "session", None)
    if data is None:
        data = request.app.state.sessions.loads(request.cookies.get(SESSION_COOKIE)) or {}
        if "csrf" not in data:
            data = {"csrf": new_token()}
            request.state.session_dirty = True
        request.state.session = data
    return data


def set_session(request: Request, data: dict[str, Any]) -> None:
    request.state.session = data
    request.state.session_dirty = True


def session_cookie(app: FastAPI, session: dict[str, Any]) -> str:
    """The Set-Cookie value of a (changed) session."""
    settings: WebSettings = app.state.settings
    carrier = Response()
    carrier.set_cookie(
        SESSION_COOKIE,
        app.state.sessions.dumps(session),
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        path="/",
    )
    return carrier.headers["set-cookie"]


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class ResponseHeaders:
    """Adds to every HTTP response: the security headers, ``Server-Timing`` (the app's own time for
    the request: waiting for a worker thread, the database, the handler, so a load test can tell it
    from the client's overhead) and the session cookie when the request changed its session.

    A plain ASGI middleware that edits the response's start message: Starlette's
    ``BaseHTTPMiddleware`` (``@app.middleware("http")``) runs every request through an extra task
    and a pair of memory streams, a sizeable part of a request's server CPU here."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app, self.fastapi_app = app, fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("Server-Timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}")
                state = scope.get("state") or {}
                if state.get("session_dirty"):
                    headers.append("set-cookie", session_cookie(self.fastapi_app, state["session"]))
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not path.startswith("/api/docs"):
                    headers.setdefault("Content-Security-Policy", CSP)
                if path.startswith("/api/"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def check_csrf(request: Request) -> None:
    """A cookie-authenticated state change must repeat the session's CSRF token."""
    if request.method not in UNSAFE or request.headers.get("authorization", "").startswith("Bearer "):
        return
    sent: str | None = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        field = (await request.form()).get("csrf_token")
        sent = field if isinstance(field, str) else None
    if not same(sent, session_data(request).get("csrf")):
        raise HTTPException(403, "missing or wrong CSRF token")


class UserCache:
    """Who a token or session is (the person and their project roles), remembered for ``ttl``
    seconds: with people pausing ~30 s between requests, a 2 s memory missed on almost every
    request, and the lookup was a fifth of the server's time per request under load (plus one more
    worker-thread hop). A long memory stays correct because nothing it holds decides a refusal
    that can come late:

    - every change of a person, membership, role or API token made in this process (this server's
      endpoints, the admin's quality run, :class:`FeedbackStore` and :mod:`alignkit.web.accounts`
      calls) bumps ``FeedbackStore.people_epoch``, and the cache empties itself when it sees a new
      value, so a replaced token is refused at the very next request;
    - screening status (excluded, flagged) is not taken from here: the store reads it in the
      transaction of every next-task and submit, so an exclusion made anywhere, the CLI included,
      applies at once;
    - what another process can change besides status is additive (the CLI adds people and
      memberships; tokens are issued only by this server): that is seen within ``ttl``.
    """

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._users: dict[tuple[str, Any], tuple[float, User | None]] = {}
        self._epoch = FeedbackStore.people_epoch

    def _fresh(self, key: tuple[str, Any], now: float) -> tuple[float, User | None] | None:
        if self._epoch != FeedbackStore.people_epoch:
            self._epoch = FeedbackStore.people_epoch
            self._users.clear()
            return None
        hit = self._users.get(key)
        return hit if hit is not None and now - hit[0] < self.ttl else None

    def peek(self, key: tuple[str, Any]) -> tuple[bool, User | None]:
        """(found, user) without loading: lets the async dependency stay off the thread pool on a hit."""
        hit = self._fresh(key, time.monotonic())
        return (True, hit[1]) if hit is not None else (False, None)

    def get(self, key: tuple[str, Any], load: Callable[[], User | None]) -> User | None:
        now = time.monotonic()
        hit = self._fresh(key, now)
        if hit is not None:
            return hit[1]
        epoch = FeedbackStore.people_epoch
        user = load()
        if len(self._users) > 10_000:
            self._users.clear()
        if epoch == FeedbackStore.people_epoch:  # nothing changed while loading: safe to remember
            self._users[key] = (now, user)
        return user

    def clear(self) -> None:
        self._users.clear()


def _identity(request: Request) -> tuple[tuple[str, Any], Callable[[], User | None]] | None:
    """The cache key of whoever sent the request and how to load them (None: anonymous)."""
    store: FeedbackStore = request.app.state.store
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        token = auth.removeprefix("Bearer ").strip()
        return ("token", token_hash(token)), lambda: accounts.user_by_token(store, token)
    uid = session_data(request).get("uid")
    if isinstance(uid, int):
        return ("uid", uid), lambda: accounts.load_user(store, uid)
    return None


def _checked(request: Request, user: User | None) -> User | None:
    if user is None and request.headers.get("authorization", "").startswith("Bearer "):
        raise HTTPException(401, "unknown API token")
    return user


def optional_user(request: Request) -> User | None:
    ident = _identity(request)
    if ident is None:
        return None
    cache: UserCache = request.app.state.users
    return _checked(request, cache.get(*ident))


async def current_user(request: Request) -> User:
    """An async dependency: a cached person costs no trip through the worker thread pool (each trip
    is a thread hand-off under the GIL); only a cache miss reads the database, in a worker thread."""
    ident = _identity(request)
    user = None
    if ident is not None:
        cache: UserCache = request.app.state.users
        found, user = cache.peek(ident[0])
        if not found:
            user = await run_in_threadpool(cache.get, *ident)
        user = _checked(request, user)
    if user is None:
        raise HTTPException(401, "sign in first")
    return user


AnyUser = Annotated[User, Depends(current_user)]


async def member(project: str, user: AnyUser) -> User:
    if user.project_role(project) is None:
        raise HTTPException(403, f"you are not a member of project {project!r}")
    return user


async def admin(project: str, user: AnyUser) -> User:
    if user.project_role(project) != "admin":
        raise HTTPException(403, f"only an admin of project {project!r} may do this")
    return user


async def server_admin(user: AnyUser) -> User:
    if not user.is_admin:
        raise HTTPException(403, "only a server admin may do this")
    return user


MemberUser = Annotated[User, Depends(member)]  # a member of the path's project (any role)
AdminUser = Annotated[User, Depends(admin)]  # an admin of the path's project
ServerAdmin = Annotated[User, Depends(server_admin)]


def _store(request: Request) -> FeedbackStore:
    return request.app.state.store


def _project_id(store: FeedbackStore, project: str) -> int:
    try:
        return store.project(project)[0]
    except FeedbackError as err:
        raise HTTPException(404, str(err)) from err


def _view(v: Any) -> dict[str, Any]:
    d = asdict(v)
    d["lease_expires_at"] = v.lease_expires_at.isoformat() + "Z"
    return d


def my_task(store: FeedbackStore, project: str, user: User, task_id: int) -> dict[str, Any]:
    """The user's own open (leased) task in ``project``; 403 for anything else."""
    pid = _project_id(store, project)
    for v in store.pending(user.name):
        if v.id == task_id:
            with store.read() as s:
                if s.scalar(select(Task.project_id).where(Task.id == task_id)) == pid:
                    return _view(v)
    raise HTTPException(403, f"task {task_id} is not leased to you")


def progress(store: FeedbackStore, project: str, user: User) -> dict[str, Any]:
    pid = _project_id(store, project)
    with store.read() as s:
        mine = dict(
            s.execute(
                select(Assignment.status, func.count())
                .join(Task, Task.id == Assignment.task_id)
                .where(Assignment.annotator_id == user.id, Task.project_id == pid)
                .group_by(Assignment.status)
            ).all()
        )
    _, cfg = store.project(project)
    stages = {
        st.name: {
            "done": store.count_tasks(project, st.name, "done") + store.count_tasks(project, st.name, "auto"),
            "total": store.count_tasks(project, st.name),
        }
        for st in cfg.stages
    }
    return {
        "submitted": mine.get("submitted", 0),
        "pending": mine.get("pending", 0),
        "skipped": mine.get("skipped", 0),
        "stages": stages,
    }


def project_info(store: FeedbackStore, project: str, user: User) -> dict[str, Any]:
    pid, cfg = store.project(project)
    with store.read() as s:
        guideline = s.scalar(select(Guideline.text).where(Guideline.project_id == pid).order_by(Guideline.version.desc()))
    stages = [{"name": st.name, "task_type": st.task_type, "role": st.role} for st in cfg.stages]
    info: dict[str, Any] = {
        "name": project,
        "role": user.project_role(project),
        "status": store.person(project, user.name).status,  # your screening state in this project
        "guidelines": guideline or cfg.guidelines,
        "stages": stages,
        "lease_minutes": cfg.lease_minutes,
    }
    if info["role"] == "admin":
        info["config"] = cfg.model_dump(mode="json")
    return info


def admin_progress(store: FeedbackStore, project: str) -> dict[str, Any]:
    pid, cfg = store.project(project)
    hour_ago = utcnow() - timedelta(hours=1)
    with store.read() as s:
        last_hour = s.scalar(
            select(func.count())
            .select_from(Annotation)
            .join(Task, Task.id == Annotation.task_id)
            .where(Task.project_id == pid, Annotation.created_at >= hour_ago)
        )
        total = s.scalar(
            select(func.count()).select_from(Annotation).join(Task, Task.id == Annotation.task_id).where(Task.project_id == pid)
        )
    stages = {
        st.name: {
            "task_type": st.task_type,
            "open": store.count_tasks(project, st.name, "open"),
            "done": store.count_tasks(project, st.name, "done"),
            "auto": store.count_tasks(project, st.name, "auto"),
            "total": store.count_tasks(project, st.name),
        }
        for st in cfg.stages
    }
    return {"stages": stages, "judgments": total, "judgments_last_hour": last_hour}


T = TypeVar("T")


def _store_errors(fn: Callable[[], T]) -> T:
    """Map store refusals to HTTP codes (nothing was written in any of these cases)."""
    try:
        return fn()
    except LeaseExpired as err:
        raise HTTPException(409, str(err)) from err
    except (NotAssigned, UnknownTask) as err:
        raise HTTPException(403, str(err)) from err
    except NotAllowed as err:
        raise HTTPException(403, str(err)) from err
    except TooManyPending as err:
        raise HTTPException(409, str(err)) from err
    except InvalidAnswer as err:
        raise HTTPException(422, str(err)) from err
    except UnknownAnnotator as err:
        raise HTTPException(403, str(err)) from err
    except (FeedbackError, KeyError) as err:
        raise HTTPException(400, str(err).strip('"')) from err


# -- routes ----------------------------------------------------------------------------------------------------
api = APIRouter(prefix="/api/v1", dependencies=[Depends(check_csrf)])


@api.get("/session", tags=["account"])
def get_session(request: Request) -> dict[str, Any]:
    """The CSRF token of this browser session (sets the session cookie); who is signed in."""
    data = session_data(request)
    user = optional_user(request)
    return {"csrf_token": data["csrf"], "user": user.name if user else None}


@api.post("/login", tags=["account"])
def login(body: LoginBody, request: Request) -> dict[str, Any]:
    return do_login(request, body.name, body.password)


def do_login(request: Request, name: str, password: str) -> dict[str, Any]:
    app = request.app
    ip = request.client.host if request.client else "?"
    # Every attempt counts against the address; only failures count against the name, so a
    # person's own successful sign-ins never lock them out.
    if not app.state.login_ip.hit(ip) or app.state.login_name.full(name):
        raise HTTPException(429, "too many login attempts; wait a few minutes")
    user = accounts.authenticate(app.state.store, name, password)
    if user is None:
        app.state.login_name.hit(name)
        raise HTTPException(401, "wrong name or password")
    set_session(request, {"uid": user.id, "csrf": new_token()})  # a new token at sign-in (no fixation)
    return {"user": user.name, "csrf_token": request.state.session["csrf"]}


@api.post("/logout", tags=["account"])
def logout(request: Request) -> dict[str, Any]:
    set_session(request, {"csrf": new_token()})
    return {"ok": True}


@api.post("/join", tags=["account"])
def join(body: JoinBody, request: Request) -> dict[str, Any]:
    """Accept an invitation: sign up (name, password), or add its project to the signed-in account."""
    store = _store(request)
    user = optional_user(request)
    aid = _store_errors(lambda: accounts.accept_invitation(store, body.token, body.name, body.password, user))
    request.app.state.users.clear()
    set_session(request, {"uid": aid, "csrf": new_token()})
    joined = accounts.load_user(store, aid)
    assert joined is not None  # created or found in the transaction above
    return {"user": joined.name, "csrf_token": request.state.session["csrf"]}


@api.get("/me", tags=["account"])
def me(request: Request, user: AnyUser) -> dict[str, Any]:
    """Who you are; your role and your screening state in each project (they are per project)."""
    store = _store(request)
    status = {p: store.person(p, user.name).status for p in user.memberships}
    return {"name": user.name, "server_admin": user.is_admin, "projects": user.memberships, "status": status}


@api.post("/me/token", tags=["account"])
def api_token(request: Request, user: AnyUser) -> dict[str, str]:
    """A new API token for scripts (``Authorization: Bearer ...``); replaces the previous one."""
    token = accounts.new_api_token(_store(request), user.id)
    request.app.state.users.clear()  # the old token stops working now
    return {"token": token}


@api.get("/projects", tags=["annotate"])
def projects(request: Request, user: AnyUser) -> list[dict[str, Any]]:
    store = _store(request)
    with store.read() as s:
        names = list(s.scalars(select(Project.name).order_by(Project.id)))
    return [project_info(store, n, user) for n in names if user.project_role(n)]


@api.get("/projects/{project}", tags=["annotate"])
def project_detail(project: str, request: Request, user: MemberUser) -> dict[str, Any]:
    return project_info(_store(request), project, user)


@api.post("/projects/{project}/next", tags=["annotate"])
def next_task(project: str, request: Request, user: MemberUser, body: NextBody | None = None) -> dict[str, Any]:
    """Lease the next task (``task`` null when nothing is left for you)."""
    store = _store(request)
    _project_id(store, project)
    stage = body.stage if body else None
    view = _store_errors(lambda: store.next_task(project, user.name, stage=stage))
    return {"task": _view(view) if view else None}


@api.get("/projects/{project}/tasks", tags=["annotate"])
def my_tasks(project: str, request: Request, user: MemberUser) -> list[dict[str, Any]]:
    """Your open leases in this project (to resume after a reload)."""
    store = _store(request)
    pid = _project_id(store, project)
    views = store.pending(user.name)
    with store.read() as s:
        here = set(s.scalars(select(Task.id).where(Task.project_id == pid, Task.id.in_([v.id for v in views]))))
    return [_view(v) for v in views if v.id in here]


@api.get("/projects/{project}/tasks/{task_id}", tags=["annotate"])
def get_task(project: str, task_id: int, request: Request, user: MemberUser) -> dict[str, Any]:
    return my_task(_store(request), project, user, task_id)


@api.put("/projects/{project}/tasks/{task_id}/draft", tags=["annotate"])
def save_draft(project: str, task_id: int, body: DraftBody, request: Request, user: MemberUser) -> dict[str, Any]:
    store = _store(request)
    my_task(store, project, user, task_id)
    _store_errors(lambda: store.save_draft(user.name, task_id, body.draft))
    return {"ok": True}


@api.post("/projects/{project}/tasks/{task_id}/submit", tags=["annotate"])
def submit(
    project: str,
    task_id: int,
    body: SubmitBody,
    request: Request,
    user: MemberUser,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Submit an answer. Send an ``Idempotency-Key`` header to make a retry safe: a repeat of a
    submit that committed answers with the same annotation id and writes nothing."""
    store = _store(request)
    key = f"web:{idempotency_key}" if idempotency_key else None
    _project_id(store, project)
    note = _store_errors(lambda: store.submit(user.name, task_id, body.answer, idempotency_key=key, project=project))
    return {"annotation_id": note}


@api.post("/projects/{project}/tasks/{task_id}/skip", tags=["annotate"])
def skip(project: str, task_id: int, request: Request, user: MemberUser) -> dict[str, Any]:
    store = _store(request)
    my_task(store, project, user, task_id)
    _store_errors(lambda: store.skip(user.name, task_id))
    return {"ok": True}


@api.post("/projects/{project}/tasks/{task_id}/flag", tags=["annotate"])
def flag_task(project: str, task_id: int, body: FlagBody, request: Request, user: MemberUser) -> dict[str, Any]:
    """Report the task leased to you (broken, unsafe, unanswerable): it goes to the admins' review
    queue and leaves your queue (like a skip)."""
    store = _store(request)
    my_task(store, project, user, task_id)
    return {"flag_id": _store_errors(lambda: store.flag(user.name, task_id, body.reason))}


@api.get("/projects/{project}/progress", tags=["annotate"])
def my_progress(project: str, request: Request, user: MemberUser) -> dict[str, Any]:
    return progress(_store(request), project, user)


# -- admin -------------------------------------------------------------------------------------------------------
@api.post("/projects", tags=["admin"])
def create_project(body: ProjectBody, request: Request, user: ServerAdmin) -> dict[str, Any]:
    store = _store(request)
    if body.template == "custom":
        cfg = _store_errors(lambda: ProjectConfig.model_validate(body.config or {}))
    elif body.template == "sft":
        cfg = sft_project(body.overlap)
    else:
        cfg = preference_project(body.overlap, None, body.gold_rate)
    _store_errors(lambda: store.create_project(body.name, cfg))
    return project_info(store, body.name, user)


@api.post("/invitations", tags=["admin"])
def invite_server_admin(request: Request, user: ServerAdmin) -> dict[str, str]:
    return {"token": accounts.invite(_store(request), None, "admin")}


@api.get("/projects/{project}/admin/progress", tags=["admin"])
def get_admin_progress(project: str, request: Request, user: AdminUser) -> dict[str, Any]:
    return admin_progress(_store(request), project)


@api.post("/projects/{project}/admin/import", tags=["admin"])
def import_rows(project: str, body: ImportBody, request: Request, user: AdminUser) -> dict[str, Any]:
    """The same code as ``alignkit feedback import``: import rows, then let the stages pick them up."""
    store = _store(request)

    def run() -> dict[str, Any]:
        counts = import_items(store, project, body.rows, stage=body.stage, gold_fraction=body.gold_fraction, seed=body.seed)
        return {**counts, "tasks_by_stage": advance(store, project)}

    try:
        return _store_errors(run)
    except ValueError as err:
        raise HTTPException(400, str(err)) from err


def annotator_rows(store: FeedbackStore, project: str) -> list[dict[str, Any]]:
    pid = store.project(project)[0]
    quality = {r.annotator: r.model_dump() for r in q.annotator_quality(store, project)}
    with store.read() as s:
        people = s.execute(
            select(Annotator.id, Annotator.name, Membership.role)
            .join(Membership, Membership.annotator_id == Annotator.id)
            .where(Membership.project_id == pid)
            .order_by(Annotator.name)
        ).all()
        secs: dict[int, float | None] = dict(
            s.execute(
                select(
                    Assignment.annotator_id,
                    func.avg(func.julianday(Assignment.submitted_at) - func.julianday(Assignment.assigned_at)) * 86400
                    if store.is_sqlite
                    else func.avg(func.extract("epoch", Assignment.submitted_at - Assignment.assigned_at)),
                )
                .join(Task, Task.id == Assignment.task_id)
                .where(Task.project_id == pid, Assignment.status == "submitted")
                .group_by(Assignment.annotator_id)
            ).all()
        )
    here = store.people(project)  # status and super-rater mark in this project
    rows = []
    for aid, name, role in people:
        row = quality.get(name) or {
            "annotator": name,
            "status": here[name].status,
            "super_rater": here[name].super_rater,
            "n_judgments": 0,
            "n_gold": 0,
            "n_gold_correct": 0,
            "gold_accuracy": None,
            "n_peer": 0,
            "n_peer_agree": 0,
            "peer_agreement": None,
        }
        row["role"] = role
        row["gold_interval"] = q_interval(row["n_gold_correct"], row["n_gold"])
        mean_s = secs.get(aid)
        row["seconds_per_item"] = round(float(mean_s), 1) if mean_s is not None else None
        rows.append(row)
    return rows


def q_interval(k: int, n: int) -> list[float] | None:
    """Wilson 95 % interval of a gold accuracy of ``k`` right out of ``n``."""
    if n == 0:
        return None
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


@api.get("/projects/{project}/admin/annotators", tags=["admin"])
def list_annotators(project: str, request: Request, user: AdminUser) -> list[dict[str, Any]]:
    return annotator_rows(_store(request), project)


@api.post("/projects/{project}/admin/annotators/{name}", tags=["admin"])
def change_annotator(project: str, name: str, body: AnnotatorChange, request: Request, user: AdminUser) -> dict[str, Any]:
    """Admit (status active), exclude, flag, make super rater, or change the role, in this project."""
    store = _store(request)
    pid = _project_id(store, project)
    with store.read() as s:
        is_member = s.scalar(
            select(Membership.id)
            .join(Annotator, Annotator.id == Membership.annotator_id)
            .where(Membership.project_id == pid, Annotator.name == name)
        )
    if is_member is None:
        raise HTTPException(404, f"{name!r} is not in project {project!r}")
    _store_errors(
        lambda: store.set_annotator(name, status=body.status, super_rater=body.super_rater, role=body.role, project=project)
    )
    request.app.state.users.clear()
    return {"ok": True}


@api.get("/projects/{project}/admin/review", tags=["admin"])
def review_queue(
    project: str,
    request: Request,
    user: AdminUser,
    status: Literal["open", "dismissed", "reopened", "adjudicated", "all"] = "open",
) -> list[dict[str, Any]]:
    """Flagged items (reported by annotators, or closed without agreement) with every judgment."""
    store = _store(request)
    _project_id(store, project)
    return store.flags(project, None if status == "all" else status)


@api.post("/projects/{project}/admin/review/{flag_id}", tags=["admin"])
def resolve(project: str, flag_id: int, body: ResolveBody, request: Request, user: AdminUser) -> dict[str, Any]:
    """Dismiss a flag, reopen its task for one more judgment, or decide it (the label aggregation uses)."""
    store = _store(request)
    _project_id(store, project)
    _store_errors(lambda: store.resolve_flag(project, flag_id, user.name, body.action, body.answer))
    return {"ok": True}


@api.post("/projects/{project}/admin/invitations", tags=["admin"])
def invite(project: str, body: InviteBody, request: Request, user: AdminUser) -> dict[str, str]:
    token = _store_errors(lambda: accounts.invite(_store(request), project, body.role, body.status, body.days))
    return {"token": token, "url": str(request.base_url) + f"join?token={token}"}


@api.get("/projects/{project}/admin/quality", tags=["admin"])
def get_quality(project: str, request: Request, user: AdminUser) -> dict[str, Any]:
    store = _store(request)
    return {"annotators": annotator_rows(store, project), "agreement": q.agreement_report(store, project)}


@api.post("/projects/{project}/admin/quality", tags=["admin"])
def run_quality(project: str, body: QualityRun, request: Request, user: AdminUser) -> dict[str, Any]:
    """The same steps as ``alignkit feedback quality --screen --flag-spammers --super-raters``."""
    store = _store(request)
    out: dict[str, Any] = {}
    if body.screen:
        out["screening"] = q.screen(store, project)
    if body.flag_spammers:
        out["flagged"] = q.flag_spammers(store, project)
    if body.super_raters:
        out["super_raters"] = q.update_super_raters(store, project)
    return out


@api.post("/projects/{project}/admin/aggregate", tags=["admin"])
def aggregate(project: str, body: AggregateBody, request: Request, user: AdminUser) -> dict[str, Any]:
    """The same code and summary as ``alignkit feedback aggregate``."""
    aggs = _store_errors(lambda: aggregate_stage(_store(request), project, body.stage, body.method))
    rows = [a.model_dump() for a in aggs.values()]
    return {
        "tasks": len(rows),
        "labels": dict(Counter(str(a.label) for a in aggs.values())),
        "mean_confidence": round(sum(a.confidence for a in aggs.values()) / max(len(rows), 1), 4),
        "rows": rows,
    }


@api.post("/projects/{project}/admin/export", tags=["admin"])
def export(project: str, body: ExportBody, request: Request, user: AdminUser) -> dict[str, Any]:
    """The records ``alignkit feedback export`` writes (same function), as JSON."""
    records = _store_errors(
        lambda: build_records(
            _store(request),
            project,
            body.kind,
            stage=body.stage,
            method=body.method,
            min_agreement=body.min_agreement,
            min_confidence=body.min_confidence,
        )
    )
    return {"kind": body.kind, "n": len(records), "records": records}


# -- the application -----------------------------------------------------------------------------------------
# What an anonymous request to these reaches before it is refused (401) is what a first real request
# would pay for once: FastAPI reads each endpoint's source for its error context on first use (~50 ms
# of tokenizing on a busy box), builds the middleware stack, and so on.
WARM_ROUTES = (
    ("POST", "/api/v1/projects/-/next"),
    ("POST", "/api/v1/projects/-/tasks/0/submit"),
    ("GET", "/api/v1/projects/-/tasks"),
    ("GET", "/api/v1/projects/-/progress"),
    ("GET", "/api/v1/projects/-"),
)


async def warm_up(app: FastAPI, connections: int) -> None:
    """Do before the first request what the first requests would otherwise wait for, each alone
    taking up to 1-2 s of server time in a burst at start-up (benchmarks/README.md, "Annotation web
    app under load"): open the database pool's connections and run every hot-path statement once on
    each (:meth:`FeedbackStore.warm_up`: compiled, and each backend's catalog caches filled), compile
    the identity query, and send one anonymous request to each annotator endpoint. Nothing
    user-specific is loaded or rendered, and nothing is written."""
    store: FeedbackStore = app.state.store
    await run_in_threadpool(store.warm_up, connections)
    await run_in_threadpool(accounts.user_by_token, store, "")  # no such token: None

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(_message: Message) -> None:
        pass

    for method, path in WARM_ROUTES:
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            "state": {},
        }
        await app(scope, receive, send)


def create_app(store: FeedbackStore | str, secret_key: str, settings: WebSettings | None = None) -> FastAPI:
    """The app on ``store`` (a FeedbackStore or a database URL), signing sessions with ``secret_key``."""
    from alignkit.web import pages

    if not secret_key or len(secret_key) < 16:
        raise ValueError("the secret key must have at least 16 characters")
    settings = settings or WebSettings(secret_key=secret_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        if settings.warm_up:
            await warm_up(app, settings.worker_threads)
        if settings.freeze_heap:
            settle_heap()  # after the warm-up, so what it built is frozen too
        yield

    app = FastAPI(
        title="alignkit annotation",
        version="1",
        docs_url="/api/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store = FeedbackStore(store) if isinstance(store, str) else store
    app.state.settings = settings
    app.state.sessions = Sessions(secret_key)
    app.state.users = UserCache()
    app.state.login_name = RateLimiter(settings.login_attempts_per_name, settings.login_window_s)
    app.state.login_ip = RateLimiter(settings.login_attempts_per_ip, settings.login_window_s)

    app.add_middleware(ResponseHeaders, fastapi_app=app)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if not request.url.path.startswith("/api/") and exc.status_code in (401, 403):
            return pages.error_page(request, exc)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    app.include_router(api)
    app.include_router(pages.router)
    return app
