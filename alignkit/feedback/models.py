"""SQLAlchemy 2 tables of the feedback store.

Every raw judgment is kept (``annotations``), linked to the assignment it answered, so
aggregation can always be redone. Gold answers live in their own table: a gold task looks
exactly like any other task to the annotator (same type, same payload shape, same queue).
The schema is created by the Alembic migrations in ``alignkit/feedback/migrations``; keep
them in step with this file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Secret that decides where gold tasks fall in each annotator's queue; never shown to annotators
    # (the public ``config.seed`` must not predict gold). Filled on first use for older databases.
    gold_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Guideline(Base):
    __tablename__ = "guidelines"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Criterion(Base):
    __tablename__ = "criteria"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20), default="criterion")  # criterion | harm | rule
    description: Mapped[str] = mapped_column(Text, default="")


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="annotator")  # annotator | reviewer | admin
    status: Mapped[str] = mapped_column(String(20), default="active")  # candidate | probation | active | excluded | flagged
    super_rater: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "content_key", name="uq_prompt_content_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | accepted | rejected
    source: Mapped[str] = mapped_column(String(100), default="import")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Imports: a hash of the imported row, so importing the same row again adds nothing (None: not imported).
    # The row's responses are created with the prompt in one transaction, so this key covers them too.
    content_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Response(Base):
    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)  # None: written by a person
    author_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), nullable=True)
    domain: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | accepted | rejected
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"), nullable=True)  # edited from
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_queue", "project_id", "stage", "status", "is_gold"),
        UniqueConstraint("project_id", "content_key", name="uq_task_content_key"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(40))
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"), nullable=True, index=True)
    response_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # settings shown to the annotator
    author_ids: Mapped[list[int]] = mapped_column(JSON, default=list)  # who may not do it (own output)
    overlap: Mapped[int] = mapped_column(Integer, default=1)  # current target number of judgments
    max_overlap: Mapped[int] = mapped_column(Integer, default=1)  # dynamic overlap ceiling
    n_active: Mapped[int] = mapped_column(Integer, default=0)  # pending + submitted assignments
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | done | auto
    prelabel: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prelabel_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    content_key: Mapped[str | None] = mapped_column(String(64), nullable=True)  # imported row + stage (see Prompt)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


# The assigner's query walks this index in its own order (fullest open task first, then oldest) and
# stops at the first row it may take, instead of sorting every open task of the stage per request
# (5 ms of PostgreSQL time at 6 000 open tasks, growing with the queue).
Index("ix_tasks_claim", Task.project_id, Task.stage, Task.status, Task.is_gold, Task.n_active.desc(), Task.id)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "annotator_id", name="uq_assignment_task_annotator"),
        Index("ix_assignments_annotator_status", "annotator_id", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | submitted | expired | skipped | discounted
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # saved server-side
    assigned_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # A probation annotator's judgment beyond the task's overlap: it never fills a slot, never closes
    # the task or asks for more, so it cannot cost the item a trusted judgment (quality.screen).
    extra: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


class Annotation(Base):
    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("annotator_id", "idempotency_key", name="uq_annotation_idempotency"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The client's key for this submit: a retry with the same key is answered with this row.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class GoldAnswer(Base):
    __tablename__ = "gold_answers"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), unique=True)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200), default="researcher")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# -- web accounts (alignkit.web): who may sign in, with which role in which project -------------------------
class Account(Base):
    """A login for one annotator: a password hash (argon2) and a hashed API token for scripts."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    api_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("annotator_id", "project_id", name="uq_membership"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="annotator")  # annotator | reviewer | admin
    # Screening state and super-rater mark in this project (None: the annotator's own row decides, as
    # for people added before memberships existed): passing screening in one project admits nobody elsewhere.
    status: Mapped[str | None] = mapped_column(String(20), nullable=True)  # candidate | probation | active | excluded | flagged
    super_rater: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class Flag(Base):
    """An item sent to a project admin's review queue: reported by an annotator (broken, unsafe,
    unanswerable) or raised by the store (a task closed at its overlap ceiling without agreement)."""

    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), nullable=True)  # None: the store
    kind: Mapped[str] = mapped_column(String(20), default="report")  # report | disagreement
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | dismissed | reopened | adjudicated
    resolution: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the admin's answer (adjudicated)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Invitation(Base):
    """A one-use invitation: only the SHA-256 of the token is stored."""

    __tablename__ = "invitations"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # None: an invitation to be a server-wide admin (the first one is printed when the server starts)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True, nullable=True)
    role: Mapped[str] = mapped_column(String(20), default="annotator")
    status: Mapped[str] = mapped_column(String(20), default="auto")  # new annotator's status; auto: screened if gold
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_by: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), nullable=True)
