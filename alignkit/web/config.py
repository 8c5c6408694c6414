"""Settings of ``alignkit web`` (pydantic, so the CLI flags are generated from it)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WebConfig(BaseModel):
    db: str = Field("feedback.db", description="the feedback store: a SQLite path or a postgresql:// URL")
    host: str = Field("127.0.0.1", description="address to listen on; anything but loopback needs --secret-key")
    port: int = Field(8000, ge=1, le=65535)
    secret_key: str | None = Field(None, description="signs session cookies (32+ characters; or ALIGNKIT_SECRET_KEY)")
    secure_cookies: bool = Field(False, description="mark cookies Secure (set this behind HTTPS)")
