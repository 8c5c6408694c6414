"""Start the web app with uvicorn: ``alignkit web --db URL --host 127.0.0.1 --port 8000``.

On a loopback address a random secret key is made for the run when none is given (sessions end
with the server). On any other address the server refuses to start without a secret key of at
least 32 characters (``--secret-key`` or ``ALIGNKIT_SECRET_KEY``): signed cookies are only as
good as their key, and a team server must keep sessions valid across restarts.
"""

from __future__ import annotations

import gc
import os
import secrets

from alignkit.feedback.store import FeedbackStore
from alignkit.web import accounts
from alignkit.web.security import is_loopback

MIN_SECRET = 32
KEEP_ALIVE_S = 75


class ServerError(RuntimeError):
    pass


def resolve_secret(host: str, secret_key: str | None) -> str:
    key = secret_key or os.environ.get("ALIGNKIT_SECRET_KEY")
    if key and len(key) >= MIN_SECRET:
        return key
    if is_loopback(host) and not key:
        return secrets.token_urlsafe(32)
    raise ServerError(
        f"serving on {host} needs a secret key of at least {MIN_SECRET} characters (--secret-key or ALIGNKIT_SECRET_KEY)"
    )


def admin_invitation(store: FeedbackStore) -> str | None:
    """A server-admin invitation token when nobody can administer the server yet."""
    return None if accounts.has_admin(store) else accounts.invite(store, None, "admin", days=1)


def settle_heap() -> None:
    """Take everything loaded at startup out of the garbage collector's sight (``gc.freeze``).

    A full (generation-2) collection walks every tracked object; after importing FastAPI,
    SQLAlchemy, pydantic and the store's models that is ~160k objects, and one collection took
    0.2-0.4 s (1.1 s on a busy box) - a stall for every request in flight, the largest part of the
    web app's p99 under load (benchmarks/README.md, "Annotation web app under load"). Frozen objects
    are never collected (they live as long as the process anyway), so full collections only walk
    what requests allocated since. The higher generation-2 threshold makes those rarer still; the
    young generations, where request garbage dies, are collected as before.
    See https://docs.python.org/3/library/gc.html#gc.freeze (the pattern is Instagram's, for forked
    servers, but the saving in walk time is the same in one process).
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def serve(
    db: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    secret_key: str | None = None,
    secure_cookies: bool = False,
    workers: int = 1,
) -> None:
    import uvicorn

    from alignkit.web.app import WebSettings, create_app

    key = resolve_secret(host, secret_key)
    store = FeedbackStore(db)
    token = admin_invitation(store)
    if token:
        print(f"No admin yet: open http://{host}:{port}/join?token={token} to create one (valid 24 h).", flush=True)
    # The app warms itself up and then freezes the heap in its lifespan, before uvicorn accepts a connection.
    app = create_app(store, key, WebSettings(secret_key=key, secure_cookies=secure_cookies, freeze_heap=True))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        workers=workers if workers > 1 else None,
        # People pause for tens of seconds between requests; with uvicorn's 5 s default every request
        # of theirs came on a new connection. 75 s is nginx's default keep-alive.
        timeout_keep_alive=KEEP_ALIVE_S,
    )
