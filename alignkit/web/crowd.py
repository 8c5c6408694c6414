"""Run scripted annotators through the web API instead of the store: ``feedback simulate --web``.

:class:`WebCrowd` serves the store on a free loopback port (uvicorn in a thread), gives each
existing annotator a login and an API token, and offers the two calls a crowd makes,
``next_task`` and ``submit``, each made over HTTP with :class:`~alignkit.web.client.AnnotationClient`,
so every lease and answer goes through the same checks a person's browser does.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select

from alignkit.feedback.models import Account, Annotator, Membership
from alignkit.feedback.store import FeedbackStore, TaskView
from alignkit.web.app import create_app
from alignkit.web.client import AnnotationClient
from alignkit.web.security import hash_password, token_hash


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebCrowd:
    def __init__(self, store: FeedbackStore, project: str, names: list[str]) -> None:
        import uvicorn

        self.project = project
        pid = store.project(project)[0]
        password_hash = hash_password(secrets.token_urlsafe(16))  # nobody signs in with it: API tokens only
        tokens: dict[str, str] = {}
        with store.write() as s:
            for name in names:
                aid = s.scalar(select(Annotator.id).where(Annotator.name == name))
                token = secrets.token_urlsafe(32)
                s.add(Account(annotator_id=aid, password_hash=password_hash, api_token_hash=token_hash(token)))
                s.add(Membership(annotator_id=aid, project_id=pid, role="annotator"))
                tokens[name] = token
        port = _free_port()
        app = create_app(store, secrets.token_urlsafe(32))
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.02)
        self.clients = {n: AnnotationClient(f"http://127.0.0.1:{port}", token=t) for n, t in tokens.items()}

    def next_task(self, name: str) -> TaskView | None:
        t = self.clients[name].next_task(self.project)
        if t is None:
            return None
        expires = datetime.fromisoformat(t["lease_expires_at"].removesuffix("Z"))
        return TaskView(
            id=t["id"],
            type=t["type"],
            stage=t["stage"],
            prompt=t["prompt"],
            responses=t["responses"],
            payload=t["payload"],
            lease_expires_at=expires,
            draft=t["draft"],
        )

    def submit(self, name: str, task_id: int, answer: dict[str, Any]) -> int:
        return self.clients[name].submit(self.project, task_id, answer)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self._server.should_exit = True
        self._thread.join(10)
