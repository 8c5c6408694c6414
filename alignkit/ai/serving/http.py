"""HTTP pieces both servers share: the OpenAI-shaped error response, the bounded body reader and the guard."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from alignkit.ai.serving.protocol import APIError


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(status_code=err.status, content=err.body())


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``limit`` bytes: from
    ``Content-Length`` before reading anything, or while reading a chunked body."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body exceeds the limit of {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


class Guard:
    """Pure ASGI middleware: count every request and check the bearer token before anything is read.

    (Not ``@app.middleware``: Starlette's ``BaseHTTPMiddleware`` wraps ``receive`` so that a plain
    request no longer sees its client's disconnect, and cancellation needs exactly that.)
    """

    def __init__(self, app: Any, expected: bytes | None, on_request: Any) -> None:
        self.app, self.expected, self.on_request = app, expected, on_request

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.on_request()
            if self.expected is not None:
                given = dict(scope.get("headers", [])).get(b"authorization", b"")
                if not hmac.compare_digest(given, self.expected):
                    err = APIError(401, "missing or incorrect API key (send 'Authorization: Bearer KEY')", code="invalid_api_key")
                    await error_response(err)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
