"""Server-rendered pages (Jinja2, autoescaped) on top of the same functions as the JSON API.

Pages never build HTML from task text: prompts and responses go through Jinja's escaping (and a
draft travels as a JSON data block, which ``tojson`` escapes), and the only script is
``/static/app.js`` (the Content-Security-Policy forbids inline scripts). Every form carries the
session's CSRF token; the script sends it as ``X-CSRF-Token``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from alignkit.feedback.quality import agreement_report
from alignkit.web import app as api

HERE = Path(__file__).parent
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"], default=True))
router = APIRouter(include_in_schema=False, dependencies=[Depends(api.check_csrf)])

# Keys for the per-criterion rows of a compare task (A, B, tie), one row each.
CRITERION_KEYS = ["qwe", "asd", "zxc", "rty", "fgh", "vbn", "uio", "jkl"]


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    data = api.session_data(request)
    user = ctx.pop("user", None)
    html = env.get_template(name).render(csrf_token=data["csrf"], user=user, **ctx)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, exc: HTTPException) -> HTMLResponse:
    if exc.status_code == 401:
        return RedirectResponse("/login", status_code=303)  # type: ignore[return-value]
    return render(request, "error.html", status=exc.status_code, message=str(exc.detail))


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in ("app.js", "app.css"):
        raise HTTPException(404, "not found")
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(HERE / "static" / name, media_type=media)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return render(request, "login.html", error=None)


@router.post("/login")
def login_form(request: Request, name: Annotated[str, Form()], password: Annotated[str, Form()]) -> HTMLResponse:
    try:
        api.do_login(request, name, password)
    except HTTPException as err:
        return render(request, "login.html", status=err.status_code, error=err.detail)
    return RedirectResponse("/", status_code=303)  # type: ignore[return-value]


@router.post("/logout")
def logout_form(request: Request) -> RedirectResponse:
    api.logout(request)
    return RedirectResponse("/login", status_code=303)


@router.get("/join", response_class=HTMLResponse)
def join_page(request: Request, token: str = "") -> HTMLResponse:
    return render(request, "join.html", token=token, error=None, user=api.optional_user(request))


@router.post("/join")
def join_form(
    request: Request, token: Annotated[str, Form()], name: Annotated[str, Form()] = "", password: Annotated[str, Form()] = ""
) -> HTMLResponse:
    try:
        api.join(api.JoinBody(token=token, name=name or None, password=password or None), request)
    except HTTPException as err:
        return render(request, "join.html", status=err.status_code, token=token, error=err.detail, user=None)
    return RedirectResponse("/", status_code=303)  # type: ignore[return-value]


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: api.AnyUser) -> HTMLResponse:
    return render(request, "home.html", user=user, projects=api.projects(request, user))


@router.get("/p/{project}", response_class=HTMLResponse)
def landing(project: str, request: Request, user: api.MemberUser) -> HTMLResponse:
    """Resume the oldest open lease, or offer to start."""
    open_tasks = api.my_tasks(project, request, user)
    if open_tasks:
        return RedirectResponse(f"/p/{project}/task/{open_tasks[0]['id']}", status_code=303)  # type: ignore[return-value]
    store = api._store(request)
    return render(
        request,
        "landing.html",
        user=user,
        project=api.project_info(store, project, user),
        progress=api.progress(store, project, user),
        message=request.query_params.get("m"),
    )


@router.post("/p/{project}/next")
def next_form(project: str, request: Request, user: api.MemberUser) -> RedirectResponse:
    try:
        got = api.next_task(project, request, user, None)["task"]
    except HTTPException as err:
        return RedirectResponse(f"/p/{project}?m={err.status_code}", status_code=303)
    if got is None:
        return RedirectResponse(f"/p/{project}?m=done", status_code=303)
    return RedirectResponse(f"/p/{project}/task/{got['id']}", status_code=303)


@router.get("/p/{project}/task/{task_id}", response_class=HTMLResponse)
def task_page(project: str, task_id: int, request: Request, user: api.MemberUser) -> HTMLResponse:
    store = api._store(request)
    task = api.my_task(store, project, user, task_id)
    p = task["payload"]
    rows = [(c, CRITERION_KEYS[i] if i < len(CRITERION_KEYS) else "") for i, c in enumerate(p.get("criteria", []))]
    scale = p.get("scale", [1, 7])
    return render(
        request,
        "task.html",
        user=user,
        project=api.project_info(store, project, user),
        task=task,
        criteria=rows,
        scale=list(range(int(scale[0]), int(scale[1]) + 1)),
        progress=api.progress(store, project, user),
    )


@router.get("/p/{project}/admin", response_class=HTMLResponse)
def admin_page(project: str, request: Request, user: api.AdminUser) -> HTMLResponse:
    store = api._store(request)
    return render(
        request,
        "admin.html",
        user=user,
        project=api.project_info(store, project, user),
        progress=api.admin_progress(store, project),
        annotators=api.annotator_rows(store, project),
        agreement=agreement_report(store, project),
        flags=store.flags(project),
    )
