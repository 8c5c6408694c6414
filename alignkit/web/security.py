"""Passwords, tokens, signed session cookies, CSRF tokens and the login rate limit.

- Passwords: argon2id (argon2-cffi, RFC 9106 parameters); only the hash is stored.
- API tokens and invitation tokens: 256-bit random, only their SHA-256 is stored, so a copy of
  the database gives nobody a working token.
- Sessions: a cookie signed with the server's secret key (itsdangerous), HttpOnly and
  SameSite=Strict, holding the user id and the session's CSRF token; a forged or altered cookie
  fails the signature check.
- CSRF: every state-changing request authenticated by the cookie must repeat the session's token
  (``X-CSRF-Token`` header or a ``csrf_token`` form field); requests with an API token carry no
  ambient credential and need none.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "alignkit_session"
SESSION_MAX_AGE = 12 * 3600
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens (False if either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class Sessions:
    """Encode and decode the signed session cookie."""

    def __init__(self, secret_key: str) -> None:
        self._s = URLSafeTimedSerializer(secret_key, salt="alignkit-session")

    def dumps(self, data: dict[str, Any]) -> str:
        return self._s.dumps(data)

    def loads(self, value: str | None) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            data = self._s.loads(value, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (a sliding window, in memory)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._events[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def hit(self, key: str) -> bool:
        """Record one event for ``key``; False when it is over the limit (the event still counts)."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(key, now)
            q.append(now)
            return len(q) <= self.limit

    def full(self, key: str) -> bool:
        """Whether ``key`` has used up its events in the window (records nothing)."""
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= self.limit


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
