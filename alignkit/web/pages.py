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

# Keyboard shortcuts. Every choice on every page has a key or a key sequence (typed one key after
# the other, like vim's); within a page the codes are prefix-free, so a sequence is never cut short.
# ``p`` (skip), ``/`` (to the first text field) and Enter (submit) are reserved on every page.
# Compare: overall 1 2 3, both bad 0, strength 7 8 9, a criterion row per letter triple (A, B, tie);
# rows after the eighth are "4", the row's code, then 1 2 3; harms are "m" then the harm's code.
CRITERION_KEYS = ["qwe", "asd", "zxc", "rty", "fgh", "vbn", "uio", "jkl"]
DIGITS = "123456789"
LETTERS = "abcdefghijklmnoqrstuvwxyz"  # no p: it is skip


def codes(n: int, alphabet: str = DIGITS + LETTERS) -> list[str]:
    """``n`` prefix-free key codes: single keys while they last, else fixed-length sequences."""
    width = 1
    while len(alphabet) ** width < n:
        width += 1
    out: list[str] = []
    for i in range(n):
        code, k = "", i
        for _ in range(width):
            code = alphabet[k % len(alphabet)] + code
            k //= len(alphabet)
        out.append(code)
    return out


def compare_keys(criteria: list[str], harms: list[str]) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    rows = []
    extra = codes(max(len(criteria) - len(CRITERION_KEYS), 0))
    for i, c in enumerate(criteria):
        keys = list(CRITERION_KEYS[i]) if i < len(CRITERION_KEYS) else ["4" + extra[i - len(CRITERION_KEYS)] + d for d in "123"]
        rows.append((c, keys))
    return rows, [(h, "m" + code) for h, code in zip(harms, codes(len(harms)), strict=True)]


def scale_keys(values: list[int]) -> list[str]:
    """A rating scale: the digit itself when every value is one digit; the value's digits, zero-padded
    to one width, for longer non-negative scales (0..10: "07" is 7, "10" is 10); else codes in order."""
    if all(0 <= v <= 9 for v in values):
        return [str(v) for v in values]
    if all(v >= 0 for v in values):
        width = len(str(max(values)))
        return [str(v).zfill(width) for v in values]
    return codes(len(values), DIGITS + "0" + LETTERS)


def qa_keys(questions: list[dict[str, Any]]) -> list[list[str]]:
    """Option keys per question: the option's code alone for one question, else the question's
    letter then the option's code (so "b2" answers the second option of the second question)."""
    multi = [q for q in questions if q.get("options")]
    qcodes = iter(codes(len(multi), LETTERS))
    out: list[list[str]] = []
    for q in questions:
        options = q.get("options") or []
        if not options:
            out.append([])
            continue
        prefix = next(qcodes) if len(multi) > 1 else ""
        out.append([prefix + c for c in codes(len(options))])
    return out


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
    rows, harms = compare_keys(list(p.get("criteria", [])), list(p.get("harms", [])))
    scale = p.get("scale", [1, 7])
    values = list(range(int(scale[0]), int(scale[1]) + 1))
    questions = list(p.get("questions", []))
    return render(
        request,
        "task.html",
        user=user,
        project=api.project_info(store, project, user),
        task=task,
        criteria=rows,
        harms=harms,
        scale=list(zip(values, scale_keys(values), strict=True)),
        rules=list(zip(p.get("rules", []), codes(len(p.get("rules", []))), strict=True)),
        questions=list(zip(questions, qa_keys(questions), strict=True)),
        rank_keys=codes(len(task["responses"])) if task["type"] == "rank" else [],
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
