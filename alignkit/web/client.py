"""A small Python client of the annotation API: scripts (and the sandbox's simulated crowd) work
over HTTP exactly as a person in the browser does: same leases, same checks, same answers.

    client = AnnotationClient.login("http://127.0.0.1:8000", "ann1", "password")
    while (task := client.next_task("prefs")) is not None:
        client.submit("prefs", task["id"], {"overall": "A"})

Every submit carries an idempotency key; on a dropped connection or a 502/503/504 the client
retries with the same key, so a submit the server committed before the error is answered with
its first result instead of being stored twice (or refused as already submitted).
"""

from __future__ import annotations

import functools
import ssl
import time
import uuid
from typing import Any

import httpx

RETRY_STATUS = (502, 503, 504)


def _server_ms(header: str | None) -> float | None:
    """``app;dur=12.3`` -> 12.3 (the app's Server-Timing entry)."""
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";")
        if name == "app" and rest.startswith("dur="):
            try:
                return float(rest[4:])
            except ValueError:
                return None
    return None


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context per process, shared by every client: httpx builds (and loads the CA
    bundle into) a new one per ``httpx.Client``, ~0.1 s of CPU each, so 200 simulated annotators
    spent ~20 s of CPU starting up, competing with the server they were measuring."""
    return httpx.create_ssl_context()


class AnnotationClient:
    """One person's connection. Use :meth:`login` (a session, with CSRF) or an API token."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 20,
        retry_wait: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport, verify=_tls())
        self.retries, self.retry_wait = retries, retry_wait
        self.last_server_ms: float | None = None  # the server's own time for the last request (Server-Timing)
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AnnotationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def _csrf(self) -> None:
        if "Authorization" not in self.http.headers and "X-CSRF-Token" not in self.http.headers:
            self.http.headers["X-CSRF-Token"] = self._call("GET", "/api/v1/session")["csrf_token"]

    def _call(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None, retry: bool = False) -> Any:
        for attempt in range(self.retries + 1 if retry else 1):
            try:
                r = self.http.request(method, path, json=json, headers=headers)
            except httpx.TransportError:
                if not retry or attempt == self.retries:
                    raise
                time.sleep(self.retry_wait)
                continue
            self.last_server_ms = _server_ms(r.headers.get("server-timing"))
            if retry and r.status_code in RETRY_STATUS and attempt < self.retries:
                time.sleep(self.retry_wait)
                continue
            if r.status_code >= 400:
                try:
                    detail = r.json().get("detail")
                except ValueError:
                    detail = r.text
                raise ApiError(r.status_code, detail)
            return r.json()
        raise AssertionError("unreachable")

    # -- account -------------------------------------------------------------------------------------
    @classmethod
    def login(cls, base_url: str, name: str, password: str, **kwargs: Any) -> AnnotationClient:
        c = cls(base_url, **kwargs)
        c._csrf()
        c.http.headers["X-CSRF-Token"] = c._call("POST", "/api/v1/login", {"name": name, "password": password})["csrf_token"]
        return c

    @classmethod
    def join(cls, base_url: str, invitation: str, name: str, password: str, **kwargs: Any) -> AnnotationClient:
        """Accept an invitation as a new person, signed in afterwards."""
        c = cls(base_url, **kwargs)
        c._csrf()
        body = {"token": invitation, "name": name, "password": password}
        c.http.headers["X-CSRF-Token"] = c._call("POST", "/api/v1/join", body)["csrf_token"]
        return c

    def me(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/me")

    def new_api_token(self) -> str:
        return self._call("POST", "/api/v1/me/token")["token"]

    # -- annotating -------------------------------------------------------------------------------------
    def projects(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/projects")

    def next_task(self, project: str, stage: str | None = None) -> dict[str, Any] | None:
        """Lease the next task; None when nothing is left for you."""
        return self._call("POST", f"/api/v1/projects/{project}/next", {"stage": stage})["task"]

    def open_tasks(self, project: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/projects/{project}/tasks", retry=True)

    def task(self, project: str, task_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/projects/{project}/tasks/{task_id}")

    def save_draft(self, project: str, task_id: int, draft: dict[str, Any]) -> None:
        self._call("PUT", f"/api/v1/projects/{project}/tasks/{task_id}/draft", {"draft": draft})

    def submit(self, project: str, task_id: int, answer: dict[str, Any], key: str | None = None) -> int:
        """Submit (retried with one idempotency key on network errors); returns the annotation id."""
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return self._call(
            "POST", f"/api/v1/projects/{project}/tasks/{task_id}/submit", {"answer": answer}, headers=headers, retry=True
        )["annotation_id"]

    def skip(self, project: str, task_id: int) -> None:
        self._call("POST", f"/api/v1/projects/{project}/tasks/{task_id}/skip")

    def progress(self, project: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/projects/{project}/progress")

    # -- admin ---------------------------------------------------------------------------------------------
    def create_project(self, name: str, template: str = "preference", **kwargs: Any) -> dict[str, Any]:
        return self._call("POST", "/api/v1/projects", {"name": name, "template": template, **kwargs})

    def import_rows(
        self, project: str, rows: list[dict[str, Any]], stage: str | None = None, gold_fraction: float = 0.0
    ) -> dict[str, Any]:
        return self._call(
            "POST", f"/api/v1/projects/{project}/admin/import", {"rows": rows, "stage": stage, "gold_fraction": gold_fraction}
        )

    def invite(self, project: str, role: str = "annotator", status: str = "auto") -> str:
        return self._call("POST", f"/api/v1/projects/{project}/admin/invitations", {"role": role, "status": status})["token"]

    def annotators(self, project: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/projects/{project}/admin/annotators")

    def set_annotator(self, project: str, name: str, status: str | None = None, super_rater: bool | None = None) -> None:
        self._call("POST", f"/api/v1/projects/{project}/admin/annotators/{name}", {"status": status, "super_rater": super_rater})

    def run_quality(
        self, project: str, screen: bool = True, flag_spammers: bool = False, super_raters: bool = False
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/api/v1/projects/{project}/admin/quality",
            {"screen": screen, "flag_spammers": flag_spammers, "super_raters": super_raters},
        )

    def quality(self, project: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/projects/{project}/admin/quality")

    def aggregate(self, project: str, stage: str, method: str = "dawid_skene") -> dict[str, Any]:
        return self._call("POST", f"/api/v1/projects/{project}/admin/aggregate", {"stage": stage, "method": method})

    def export(self, project: str, kind: str = "pairs", **kwargs: Any) -> list[dict[str, Any]]:
        return self._call("POST", f"/api/v1/projects/{project}/admin/export", {"kind": kind, **kwargs})["records"]
