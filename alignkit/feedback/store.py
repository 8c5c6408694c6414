"""The feedback store: projects, items, tasks, assignment with overlap and gold, submissions.

Guarantees (each tested):
- every submit is one transaction: the annotation, the assignment's state, the task's counters
  and any output it creates (a written prompt or response, an accepted/rejected decision)
  commit together or not at all; a rejected submit changes nothing;
- a task never gets more live assignments (pending + submitted) than its current overlap, and
  no annotator gets the same task twice or a review of their own output, even with many
  concurrent writers: SQLite serialises writers with ``BEGIN IMMEDIATE``; PostgreSQL locks the
  candidate task row with ``FOR UPDATE SKIP LOCKED`` (a concurrent assigner takes the next
  task instead of waiting) and keeps a live-assignment counter on that row;
- an assignment is a lease: unanswered after ``lease_minutes`` it expires and its slot returns;
- gold tasks are served at the stage's ``gold_rate`` through the same queue and look the same;
  whether the next one is gold is drawn from a secret per-project key (with annotator id and
  count), so knowing the public seed, one's id and one's count predicts nothing;
- a submit is refused once its lease has run out (even if nobody expired it yet), and from an
  excluded or flagged annotator (also on gold tasks leased before the flag);
- a submit may carry an idempotency key: a retry with the same key (say after a network error on
  a submit that did commit) is answered with the first submit's annotation id, and writes nothing;
- roles and screening are per project: a person's membership of a project holds their role there
  (annotator / reviewer / admin) and their screening state (candidate / probation / active /
  excluded / flagged) and super-rater mark, so passing screening in one project, or reviewing in it, gives nothing in
  another; an annotator's own row is the fallback for people without a membership (scripts);
- a *probation* annotator (screening undecided, see :func:`alignkit.feedback.quality.screen`) gets
  gold at the stage's rate and, otherwise, regular tasks that already have a trusted judgment, as
  an *extra* judgment beyond the overlap: it takes no slot, does not close the task or ask for more
  (dynamic overlap), and when its author is excluded nothing is reopened;
- items that need a person's eye (reported by an annotator, or closed without agreement) go to the
  project's review queue (``flags``), where an admin dismisses, reopens or decides them.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Select,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    literal_column,
    not_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.db import init_db, make_engine
from alignkit.feedback.models import (
    Annotation,
    Annotator,
    Assignment,
    Base,
    Criterion,
    Flag,
    GoldAnswer,
    Guideline,
    Membership,
    Project,
    Prompt,
    Response,
    Task,
    utcnow,
)
from alignkit.feedback.schemas import InvalidAnswer, label_of, validate_answer

ROLES = ("annotator", "reviewer", "admin")
GOLD_OVERLAP = 1_000_000
# Task types whose outcome is only a label (no side effects), so a discounted judgment can be redone.
LABEL_TASKS = ("compare", "rank", "rate", "binary", "rules", "qa")  # every annotator may answer a gold task once


class FeedbackError(ValueError):
    """A request the store refuses; nothing was written."""


class UnknownTask(FeedbackError):
    pass


class UnknownAnnotator(FeedbackError):
    pass


class NotAssigned(FeedbackError):
    pass


class TooManyPending(FeedbackError):
    pass


class NotAllowed(FeedbackError):
    pass


class LeaseExpired(NotAssigned):
    """The annotator held this task, but the lease ran out or the assignment is no longer open."""


@dataclass
class TaskView:
    """What an annotator sees: no gold flag, no other people's answers."""

    id: int
    type: str
    stage: str
    prompt: str | None
    responses: list[str]
    payload: dict[str, Any]
    lease_expires_at: datetime
    draft: dict[str, Any] | None = None
    suggestion: dict[str, Any] | None = None  # a model's pre-label, when the stage shows them (show_prelabels)


@dataclass
class Person:
    """An annotator as one project sees them: role, screening state and super-rater mark there."""

    id: int
    name: str
    role: str
    status: str
    super_rater: bool


STATUSES = ("candidate", "probation", "active", "excluded", "flagged")
FLAG_ACTIONS = ("dismiss", "reopen", "adjudicate")


@dataclass
class Judgment:
    """One raw judgment with its context (for quality, aggregation and export)."""

    task_id: int
    annotator: str
    annotator_id: int
    task_type: str
    stage: str
    answer: dict[str, Any]
    label: Any
    is_gold: bool
    created_at: datetime
    gold_label: Any = None
    prompt_id: int | None = None
    response_ids: list[int] = field(default_factory=list)


# -- the hot path: next-task and submit as Core statements ------------------------------------------------
# Every next-task and submit of the web app runs these. They are Core statements (rows, no ORM
# objects, no unit-of-work flush), built once, and on PostgreSQL merged so that a next-task is 5
# round trips (BEGIN, the person with their counts, the claim with its texts, the lease, COMMIT) and
# a submit 4 (BEGIN, task + person + assignment, the writes, COMMIT): each round trip is a hand-off
# between this process and a database backend that share the same cores. The ORM versions cost
# ~15 ms of server CPU per request (benchmarks/README.md, "Annotation web app under load").
_T, _A, _AN, _M = (cast(Table, m.__table__) for m in (Task, Assignment, Annotator, Membership))
_N, _P = cast(Table, Annotation.__table__), cast(Table, Prompt.__table__)
_TASK_COLS = (
    _T.c.id,
    _T.c.project_id,
    _T.c.stage,
    _T.c.type,
    _T.c.prompt_id,
    _T.c.response_ids,
    _T.c.payload,
    _T.c.author_ids,
    _T.c.overlap,
    _T.c.prelabel,
)
_NO_TEXTS = object()


def _person_of(row: Row[Any], name: str) -> Person:
    """A person from a row with the annotator's and (outer-joined) membership's columns."""
    if row.m_id is None:
        return Person(row.id, name, row.role, row.status, row.super_rater)
    return Person(
        row.id, name, row.m_role, row.m_status or row.status, row.m_super if row.m_super is not None else row.super_rater
    )


class _HotSql:
    """The hot path's statements for one dialect (compiled once per engine, then cached)."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        me = (
            _AN.c.id,
            _AN.c.role,
            _AN.c.status,
            _AN.c.super_rater,
            _M.c.id.label("m_id"),
            _M.c.role.label("m_role"),
            _M.c.status.label("m_status"),
            _M.c.super_rater.label("m_super"),
        )
        counts = [
            select(func.count()).where(_A.c.annotator_id == _AN.c.id).scalar_subquery().label("n_seen"),
            select(func.count())
            .where(_A.c.annotator_id == _AN.c.id, _A.c.status == "pending")
            .scalar_subquery()
            .label("n_pending"),
        ]
        if postgres:
            # SET LOCAL synchronous_commit = off, in the same round trip: a lease need not survive a
            # database crash (lost, it simply is not there and the task is served again), so its
            # commit does not wait for the WAL flush; submits do.
            counts.append(func.set_config("synchronous_commit", "off", True).label("sync_off"))
        self.me_next = (
            select(*me, *counts)
            .select_from(_AN.outerjoin(_M, (_M.c.annotator_id == _AN.c.id) & (_M.c.project_id == bindparam("pid"))))
            .where(_AN.c.name == bindparam("name"))
            .with_for_update(of=_AN)
        )
        texts: list[Any] = []
        if postgres:  # the view's texts come with the claim (one round trip fewer)
            texts = [
                select(_P.c.text).where(_P.c.id == _T.c.prompt_id).scalar_subquery().label("prompt_text"),
                literal_column(
                    # one primary-key lookup per response id, in the task's order (an IN over the
                    # array was planned as a scan of every response)
                    "(SELECT json_agg((SELECT json_build_array(r.id, r.text) FROM responses r WHERE r.id = e.value::int))"
                    " FROM json_array_elements_text(tasks.response_ids) AS e)",
                    JSON,
                ).label("response_texts"),
            ]
        mine = exists().where(_A.c.task_id == _T.c.id, _A.c.annotator_id == bindparam("aid"))
        self._claim_base = (
            select(*_TASK_COLS, *texts)
            .where(
                _T.c.project_id == bindparam("pid"),
                _T.c.stage == bindparam("stage"),
                _T.c.status == "open",
                _T.c.is_gold == bindparam("gold"),
                _T.c.n_active < _T.c.overlap,
                not_(mine),
            )
            .order_by(_T.c.n_active.desc(), _T.c.id)
            .limit(1)
        )
        self._claims: dict[tuple[bool, bool], Select[Any]] = {}
        live = (
            select(func.count())
            .select_from(_A)
            .where(_A.c.task_id == _T.c.id, _A.c.status.in_(("pending", "submitted")), _A.c.extra.is_(False))
            .scalar_subquery()
        )
        # Take a slot: the live assignments are recounted under the row lock (a new statement, so it
        # sees everything committed before the lock was granted) and the counter moves only if one is free.
        self.bump = update(_T).where(_T.c.id == bindparam("tid"), live < _T.c.overlap).values(n_active=_T.c.n_active + 1)
        self.assign = insert(_A)
        self.take = text(
            "WITH u AS (UPDATE tasks SET n_active = n_active + 1 WHERE id = :tid AND (SELECT count(*) FROM assignments a"
            " WHERE a.task_id = tasks.id AND a.status IN ('pending', 'submitted') AND a.extra IS false) < overlap"
            " RETURNING id) INSERT INTO assignments (task_id, annotator_id, status, assigned_at, lease_expires_at, extra)"
            " SELECT id, :aid, 'pending', :now, :lease, false FROM u"
        ).bindparams(bindparam("now", type_=DateTime), bindparam("lease", type_=DateTime))
        prior = select(_N.c.id).where(_N.c.annotator_id == _AN.c.id, _N.c.idempotency_key == bindparam("key"))
        # Task, person and assignment in one query, both rows locked (the task lock serialises submits
        # of one task; the assignment's is re-read at its newest version once granted).
        self.submit_row = (
            select(
                _T.c.id,
                _T.c.project_id,
                _T.c.stage,
                _T.c.type,
                _T.c.payload,
                _T.c.prompt_id,
                _T.c.is_gold,
                _T.c.n_done,
                _T.c.overlap,
                _AN.c.id.label("aid"),
                _AN.c.status.label("a_status"),
                _M.c.status.label("m_status"),
                _A.c.id.label("asg_id"),
                _A.c.status.label("asg_status"),
                _A.c.lease_expires_at,
                _A.c.extra,
                prior.scalar_subquery().label("prior_id"),
            )
            .select_from(
                _T.join(_AN, _AN.c.name == bindparam("name"))
                .outerjoin(_M, (_M.c.annotator_id == _AN.c.id) & (_M.c.project_id == _T.c.project_id))
                .join(_A, (_A.c.task_id == _T.c.id) & (_A.c.annotator_id == _AN.c.id))
            )
            .where(_T.c.id == bindparam("tid"))
            .with_for_update(of=[_T, _A])
        )
        self.note = insert(_N)
        self.answered = (
            update(_A)
            .where(_A.c.id == bindparam("asg"))
            .values(status="submitted", submitted_at=bindparam("now", type_=DateTime), draft=None)
        )
        self.done = update(_T).where(_T.c.id == bindparam("tid")).values(n_done=_T.c.n_done + 1)
        self.write_submit = {
            extra: text(
                "WITH n AS (INSERT INTO annotations (task_id, annotator_id, assignment_id, answer, idempotency_key, created_at)"
                " VALUES (:tid, :aid, :asg, :answer, :key, :now) RETURNING id),"
                " g AS (UPDATE assignments SET status = 'submitted', submitted_at = :now, draft = NULL WHERE id = :asg)"
                + ("" if extra else ", t AS (UPDATE tasks SET n_done = n_done + 1 WHERE id = :tid)")
                + " SELECT id FROM n"
            ).bindparams(bindparam("answer", type_=JSON), bindparam("now", type_=DateTime))
            for extra in (False, True)
        }
        stale = select(_A.c.id).where(_A.c.status == "pending", _A.c.lease_expires_at < bindparam("now", type_=DateTime))
        self.expire = (
            update(_A)
            .where(_A.c.id.in_(stale.with_for_update(skip_locked=True).scalar_subquery()))
            .values(status="expired")
            .returning(_A.c.task_id, _A.c.extra)
        )
        self.release = update(_T).where(_T.c.id == bindparam("tid")).values(n_active=_T.c.n_active - bindparam("k"))

    def claim(self, rejected: bool, skip_locked: bool) -> Select[Any]:
        key = (rejected, skip_locked)
        if key not in self._claims:
            q = self._claim_base.where(_T.c.id.not_in(bindparam("rejected", expanding=True))) if rejected else self._claim_base
            self._claims[key] = q.with_for_update(skip_locked=skip_locked, of=_T)
        return self._claims[key]


class FeedbackStore:
    """All reads and writes of feedback go through here. ``url``: a SQLAlchemy URL or a file path."""

    # Bumped (process-wide, every store object) whenever a person, a membership, a role or an API
    # token changes through this process: the web app's identity cache drops everything it holds
    # when it sees a new value (alignkit.web.app.UserCache), so such changes apply at the next request.
    people_epoch = 0

    @classmethod
    def people_changed(cls) -> None:
        cls.people_epoch += 1

    def __init__(self, url: str, init: bool = True, echo: bool = False) -> None:
        self.engine = make_engine(url, echo=echo)
        self._write_engine = self.engine.execution_options(write=True)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sql = _HotSql(postgres=not self.is_sqlite)
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._projects: dict[str, tuple[int, ProjectConfig]] = {}
        self._configs: dict[int, ProjectConfig] = {}  # by project id (configs never change)
        self._gold_keys: dict[int, str] = {}  # by project id (a key never changes once set)
        self._last_expiry = 0.0  # time.monotonic() of the last lease sweep made on the real clock
        if init:
            init_db(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def warm_up(self, connections: int = 1) -> None:
        """Open ``connections`` pooled connections (held together, so they are distinct) and run
        each hot-path statement once on each, with arguments that match nothing, then roll back.
        The first requests of a fresh server otherwise pay for all of it: connecting, SQLAlchemy
        compiling each statement, and on PostgreSQL each new backend loading its catalog caches.
        Also loads every project's config (not secret; the gold keys stay unread until needed)."""
        never = datetime(1970, 1, 1)
        sql = self._sql
        runs: list[tuple[Any, dict[str, Any]]] = [
            (sql.me_next, {"pid": -1, "name": ""}),
            (sql.claim(False, True), {"pid": -1, "stage": "", "gold": False, "aid": -1}),
            (sql.claim(True, True), {"pid": -1, "stage": "", "gold": False, "aid": -1, "rejected": [-1]}),
            (sql.submit_row, {"name": "", "tid": -1, "key": None}),
            (sql.expire, {"now": never}),
            (sql.release, {"tid": -1, "k": 0}),
        ]
        if self.is_sqlite:
            runs += [(sql.bump, {"tid": -1}), (sql.answered, {"asg": -1, "now": never}), (sql.done, {"tid": -1})]
        else:
            runs += [
                (sql.claim(False, False), {"pid": -1, "stage": "", "gold": False, "aid": -1}),
                (sql.take, {"tid": -1, "aid": -1, "now": never, "lease": never}),
            ]
        held = [self.engine.connect() for _ in range(max(1, connections))]
        try:
            for conn in held:
                with conn.begin() as tx:
                    for stmt, params in runs:
                        conn.execute(stmt, params)
                    tx.rollback()
        finally:
            for conn in held:
                conn.close()
        with self.read() as s:
            names = list(s.scalars(select(Project.name)))
            s.get(Task, -1)  # the ORM's own statements (a task closing) compiled too
        for name in names:
            self.project(name)

    # -- sessions -----------------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction (SQLite: BEGIN IMMEDIATE); commits on success, rolls back on error.

        On SQLite the threads of this process also queue on a lock before BEGIN: SQLite's own busy
        handler makes waiting writers sleep and poll, so under many threads some starved for
        seconds (a 6.5 s p99 with 20 web clients); a lock hands the database over as soon as it is
        free. Other processes (the CLI) still wait through the busy timeout."""
        with self._write_lock, Session(self._write_engine, expire_on_commit=False) as s, s.begin():
            yield s

    # -- projects, people, items ---------------------------------------------------------------------
    def create_project(
        self, name: str, config: ProjectConfig | None = None, exist_ok: bool = False, gold_key: str | None = None
    ) -> int:
        """``gold_key``: the secret that places gold tasks (random when None; simulations pass a
        fixed one so a seed reproduces a run)."""
        config = config or ProjectConfig()
        with self.write() as s:
            found = s.scalar(select(Project).where(Project.name == name))
            if found is not None:
                if not exist_ok:
                    raise FeedbackError(f"project {name!r} already exists")
                return found.id
            p = Project(name=name, config=config.model_dump(mode="json"), gold_key=gold_key or secrets.token_hex(32))
            s.add(p)
            s.flush()
            if config.guidelines:
                s.add(Guideline(project_id=p.id, text=config.guidelines))
            for stage in config.stages:
                for kind in ("criteria", "harms", "rules"):
                    for cname in stage.task_payload().get(kind, []):
                        ckind = {"criteria": "criterion", "harms": "harm", "rules": "rule"}[kind]
                        if s.scalar(select(Criterion).where(Criterion.project_id == p.id, Criterion.name == cname)) is None:
                            s.add(Criterion(project_id=p.id, name=cname, kind=ckind))
                            s.flush()
            return p.id

    def project(self, name: str) -> tuple[int, ProjectConfig]:
        """(id, config) of a project; configs do not change after creation, so they are cached."""
        if name in self._projects:
            return self._projects[name]
        with self.read() as s:
            p = s.scalar(select(Project).where(Project.name == name))
            if p is None:
                raise FeedbackError(f"no project {name!r}")
            self._projects[name] = (p.id, ProjectConfig.model_validate(p.config))
            return self._projects[name]

    def has_gold(self, project: str) -> bool:
        """Whether the project has gold tasks (then new annotators are screened on them first)."""
        pid, _ = self.project(project)
        with self.read() as s:
            return s.scalar(select(exists().where(Task.project_id == pid, Task.is_gold.is_(True)))) or False

    def default_status(self, project: str, role: str = "annotator") -> str:
        """The status a newly added person starts with: a plain annotator in a project with gold is a
        screening candidate; reviewers, admins, and everyone in projects without gold start active."""
        return "candidate" if role == "annotator" and self.has_gold(project) else "active"

    def add_annotator(
        self, name: str, role: str = "annotator", status: str = "active", exist_ok: bool = False, project: str | None = None
    ) -> int:
        """Add a person. With ``project``, also make them a member of it with ``role`` and ``status``
        there (an existing person gets the membership when they have none in that project)."""
        if role not in ROLES:
            raise FeedbackError(f"role must be one of {ROLES}, got {role!r}")
        if status not in STATUSES:
            raise FeedbackError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        pid = self.project(project)[0] if project else None
        with self.write() as s:
            a = s.scalar(select(Annotator).where(Annotator.name == name))
            if a is not None and not exist_ok:
                raise FeedbackError(f"annotator {name!r} already exists")
            if a is None:
                a = Annotator(name=name, role=role, status=status)
                s.add(a)
                s.flush()
            if pid is not None and self._membership(s, pid, a.id) is None:
                s.add(Membership(annotator_id=a.id, project_id=pid, role=role, status=status))
        self.people_changed()
        return a.id

    @staticmethod
    def _membership(s: Session, project_id: int, annotator_id: int) -> Membership | None:
        return s.scalar(select(Membership).where(Membership.annotator_id == annotator_id, Membership.project_id == project_id))

    def _person(self, s: Session, project_id: int, ann: Annotator, m: Membership | None | bool = False) -> Person:
        """``m``: the membership when the caller loaded it already (None: there is none)."""
        if m is False:
            m = self._membership(s, project_id, ann.id)
        if m is None or m is True:
            return Person(ann.id, ann.name, ann.role, ann.status, ann.super_rater)
        return Person(
            ann.id,
            ann.name,
            m.role,
            m.status or ann.status,
            m.super_rater if m.super_rater is not None else ann.super_rater,
        )

    def person(self, project: str, name: str) -> Person:
        """``name`` as ``project`` sees them (role, status and super-rater mark there)."""
        pid, _ = self.project(project)
        with self.read() as s:
            return self._person(s, pid, self._annotator(s, name))

    def people(self, project: str) -> dict[str, Person]:
        """Everyone as ``project`` sees them (members with their membership, others with their own row)."""
        pid, _ = self.project(project)
        with self.read() as s:
            rows = s.execute(
                select(Annotator, Membership)
                .outerjoin(Membership, (Membership.annotator_id == Annotator.id) & (Membership.project_id == pid))
                .order_by(Annotator.id)
            ).all()
        out = {}
        for a, m in rows:
            out[a.name] = (
                Person(a.id, a.name, a.role, a.status, a.super_rater)
                if m is None
                else Person(
                    a.id, a.name, m.role, m.status or a.status, m.super_rater if m.super_rater is not None else a.super_rater
                )
            )
        return out

    def set_annotator(
        self,
        name: str,
        status: str | None = None,
        super_rater: bool | None = None,
        role: str | None = None,
        project: str | None = None,
    ) -> None:
        """Change an annotator's status/role/super-rater mark in ``project`` (their membership there,
        made when missing), or, without ``project``, their own row (the fallback for projects they
        are no member of). Excluding or flagging someone also returns the slots their judgments
        held on label tasks (of that project), so other people are asked instead (their raw
        judgments stay in the store, marked by their status, and are left out of aggregation)."""
        if status is not None and status not in STATUSES:
            raise FeedbackError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if role is not None and role not in ROLES:
            raise FeedbackError(f"role must be one of {ROLES}, got {role!r}")
        pid = self.project(project)[0] if project else None
        with self.write() as s:
            a = self._annotator(s, name)
            target: Annotator | Membership = a
            before = a.status
            if pid is not None:
                m = self._membership(s, pid, a.id)
                if m is None:
                    m = Membership(annotator_id=a.id, project_id=pid, role=a.role)
                    s.add(m)
                before, target = m.status or a.status, m
            if status is not None:
                if status in ("excluded", "flagged") and before not in ("excluded", "flagged"):
                    self._discount(s, a, pid)
                target.status = status
            if super_rater is not None:
                target.super_rater = super_rater
            if role is not None:
                target.role = role
        self.people_changed()

    def _discount(self, s: Session, ann: Annotator, project_id: int | None = None) -> None:
        q = (
            select(Assignment, Task)
            .join(Task, Task.id == Assignment.task_id)
            .where(
                Assignment.annotator_id == ann.id,
                Assignment.status.in_(("pending", "submitted")),
                Task.is_gold.is_(False),
                Task.type.in_(LABEL_TASKS),
            )
        )
        rows = s.execute(q.where(Task.project_id == project_id) if project_id is not None else q).all()
        for asg, task in rows:
            if asg.extra:  # held no slot and closed nothing
                asg.status = "discounted"
                continue
            s.refresh(task, with_for_update=True)
            task.n_active -= 1
            if asg.status == "submitted":
                task.n_done -= 1
            asg.status = "discounted"
            if task.status == "done":
                task.status, task.completed_at = "open", None

    def annotators(self) -> list[Annotator]:
        with self.read() as s:
            return list(s.scalars(select(Annotator).order_by(Annotator.id)))

    def add_prompt(
        self, project: str, text: str, status: str = "pending", source: str = "import", meta: dict | None = None
    ) -> int:
        pid, _ = self.project(project)
        with self.write() as s:
            p = Prompt(project_id=pid, text=text, status=status, source=source, meta=meta or {})
            s.add(p)
            s.flush()
            return p.id

    def add_response(
        self, prompt_id: int, text: str, model: str | None = None, status: str = "pending", meta: dict | None = None
    ) -> int:
        with self.write() as s:
            if s.get(Prompt, prompt_id) is None:
                raise FeedbackError(f"no prompt with id {prompt_id}")
            r = Response(prompt_id=prompt_id, text=text, model=model, status=status, meta=meta or {})
            s.add(r)
            s.flush()
            return r.id

    def add_task(
        self,
        project: str,
        stage: str,
        prompt_id: int | None = None,
        response_ids: Sequence[int] = (),
        gold: dict[str, Any] | None = None,
        prelabel: dict[str, Any] | None = None,
        confidence: float | None = None,
        author_ids: Sequence[int] = (),
        payload: dict[str, Any] | None = None,
    ) -> int:
        """Create one task of ``stage``. ``gold``: the researcher's answer (makes it a gold task);
        ``prelabel`` + ``confidence``: a model's answer; at or above the stage's
        ``auto_label_confidence`` the task is labelled automatically and never shown to people."""
        pid, cfg = self.project(project)
        st = cfg.stage(stage)
        with self.write() as s:
            return self._add_task(
                s, pid, st, prompt_id, list(response_ids), gold, prelabel, confidence, list(author_ids), payload
            )

    def _add_task(
        self,
        s: Session,
        project_id: int,
        st: StageConfig,
        prompt_id: int | None,
        response_ids: list[int],
        gold: dict | None,
        prelabel: dict | None,
        confidence: float | None,
        author_ids: list[int],
        payload: dict | None = None,
    ) -> int:
        p = st.task_payload() | (payload or {})
        if st.task_type == "rank":
            p["k"] = len(response_ids)
        if st.task_type == "compare" and len(response_ids) != 2:
            raise FeedbackError(f"a compare task needs exactly 2 responses, got {len(response_ids)}")
        if gold is not None:
            gold = validate_answer(st.task_type, gold, p)
        if prelabel is not None:
            prelabel = validate_answer(st.task_type, prelabel, p)
        auto = (
            prelabel is not None
            and confidence is not None
            and st.auto_label_confidence is not None
            and confidence >= st.auto_label_confidence
        )
        t = Task(
            project_id=project_id,
            stage=st.name,
            type=st.task_type,
            prompt_id=prompt_id,
            response_ids=response_ids,
            payload=p,
            author_ids=author_ids,
            overlap=GOLD_OVERLAP if gold is not None else st.overlap,
            max_overlap=GOLD_OVERLAP if gold is not None else (st.max_overlap or st.overlap),
            is_gold=gold is not None,
            status="auto" if auto else "open",
            prelabel=prelabel,
            prelabel_confidence=confidence,
            completed_at=utcnow() if auto else None,
        )
        s.add(t)
        s.flush()
        if gold is not None:
            s.add(GoldAnswer(task_id=t.id, answer=gold))
        return t.id

    # -- assignment ----------------------------------------------------------------------------------
    def expire_leases(self, now: datetime | None = None) -> int:
        """Return the slots of assignments whose lease ran out; the count expired."""
        now = now or utcnow()
        with self.write() as s:
            conn = s.connection()
            # Assignments another transaction holds (a submit in flight) are skipped, not waited for.
            stale = conn.execute(self._sql.expire, {"now": now}).all()
            slots = Counter(task_id for task_id, extra in stale if not extra)
            if slots:
                conn.execute(self._sql.release, [{"tid": t, "k": k} for t, k in sorted(slots.items())])
            return len(stale)

    def next_task(self, project: str, annotator: str, stage: str | None = None, now: datetime | None = None) -> TaskView | None:
        """Assign the annotator their next task (a lease) or return None when nothing is left for them."""
        # Sweep expired leases: on every call with an explicit ``now`` (tests, simulations), at most
        # once a second on the real clock, so a busy server does not spend a write transaction
        # per request on it (a lease is returned at most a second late; submits check expiry themselves).
        if now is not None or time.monotonic() - self._last_expiry >= 1.0:
            self._last_expiry = time.monotonic()
            self.expire_leases(now)
        now = now or utcnow()
        for attempt in range(8):
            try:
                return self._next_task(project, annotator, stage, now)
            except OperationalError as err:
                # PostgreSQL may pick this transaction as a deadlock victim; it rolled back, so retry.
                if "deadlock" not in str(err).lower() or attempt == 7:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return None

    def _annotator_here(
        self, s: Session, project_id: int, name: str, lock: bool = False, *extra: Any
    ) -> tuple[Annotator, Person, tuple[Any, ...]]:
        """The annotator row (locked with ``lock``), their person in the project and the values of
        the ``extra`` scalar subqueries (correlated to ``Annotator``), in one query: this runs in
        every next-task and submit, and each statement saved is a round trip and ~0.3 ms of
        SQLAlchemy time per request."""
        q = select(Annotator, Membership, *extra).outerjoin(
            Membership, (Membership.annotator_id == Annotator.id) & (Membership.project_id == project_id)
        )
        q = q.where(Annotator.name == name)
        row = s.execute(q.with_for_update(of=Annotator) if lock else q).first()
        if row is None:
            raise UnknownAnnotator(f"no annotator {name!r}")
        return row[0], self._person(s, project_id, row[0], row[1]), tuple(row[2:])

    def _next_task(self, project: str, annotator: str, stage: str | None, now: datetime) -> TaskView | None:
        pid, cfg = self.project(project)
        stages = [cfg.stage(stage)] if stage else cfg.stages
        with self.write() as s:
            conn = s.connection()
            # The annotator's row lock serialises their own assignments (the pending limit holds).
            # Their assignment counts come with it (the row lock is taken before they are read:
            # PostgreSQL locks the annotator row, SQLite holds the database since BEGIN IMMEDIATE).
            row = conn.execute(self._sql.me_next, {"pid": pid, "name": annotator}).first()
            if row is None:
                raise UnknownAnnotator(f"no annotator {annotator!r}")
            me = _person_of(row, annotator)
            if me.status in ("excluded", "flagged"):
                raise NotAllowed(f"annotator {annotator!r} is {me.status} in project {project!r} and gets no tasks")
            if row.n_pending >= cfg.max_pending:
                raise TooManyPending(
                    f"annotator {annotator!r} already has {row.n_pending} pending tasks (limit {cfg.max_pending});"
                    " submit some first"
                )
            draw = self._gold_draw(s, pid, me.id, row.n_seen)
            lease = now + timedelta(minutes=cfg.lease_minutes)
            for st in stages:
                if st.role == "reviewer" and me.role == "annotator":
                    continue  # a reviewer stage: reviewers and admins of this project only
                if me.status == "candidate":
                    order = [True]  # screening: candidates see only gold tasks
                elif st.gold_rate > 0 and draw < st.gold_rate:
                    order = [True, False]
                else:
                    order = [False]
                for gold in order:
                    if me.status == "probation" and not gold:
                        task = self._claim_extra(conn, pid, st, me.id, now, lease)
                    else:
                        task = self._claim(conn, pid, st.name, me.id, gold, now, lease)
                    if task is not None:
                        return self._view(s, task, lease)
            return None

    def _gold_draw(self, s: Session, project_id: int, annotator_id: int, n_seen: int) -> float:
        """A uniform number in [0, 1) that only the holder of the project's secret can compute."""
        key = self._gold_keys.get(project_id)
        if key is None:
            project = s.get_one(Project, project_id)
            if project.gold_key is None:  # a project created before the key existed (cached once committed)
                project.gold_key = secrets.token_hex(32)
                s.flush()
            else:
                self._gold_keys[project_id] = project.gold_key
            key = project.gold_key
        # random.Random seeds from the SHA-512 of the string, so without the 256-bit key the draw is
        # unknowable; with ``gold_key=str(seed)`` it is exactly the placement of versions <= 0.1.0
        # (simulations and tests pass that to reproduce earlier numbers).
        return random.Random(f"{key}:{annotator_id}:{n_seen}").random()

    def _claim(
        self, conn: Connection, project_id: int, stage: str, annotator_id: int, gold: bool, now: datetime, lease: datetime
    ) -> Any:
        """Lease the first task of the queue this annotator may take; its row (with the view's texts
        on PostgreSQL), or None when there is none."""
        params: dict[str, Any] = {"pid": project_id, "stage": stage, "gold": gold, "aid": annotator_id}
        rejected: list[int] = []
        # First pass, SKIP LOCKED: a row another assigner holds is skipped, not waited for (PostgreSQL).
        # One row at a time, so we never hold locks on rows we do not take. On SQLite the whole
        # database is locked by BEGIN IMMEDIATE: what the first pass saw is all there is. Otherwise,
        # every candidate left is locked by someone else: wait for each in turn (the WHERE clause is
        # re-checked on the row's new version) so "None" only ever means "nothing left".
        for skip_locked in (True,) if self.is_sqlite else (True, False):
            while True:
                q = self._sql.claim(bool(rejected), skip_locked)
                task = conn.execute(q, {**params, "rejected": rejected} if rejected else params).first()
                if task is None:
                    break
                # never review (or compare) your own output
                if annotator_id not in (task.author_ids or []) and self._take(conn, task.id, annotator_id, now, lease):
                    return task
                rejected.append(task.id)
        return None

    def _take(self, conn: Connection, task_id: int, annotator_id: int, now: datetime, lease: datetime) -> bool:
        """Take a slot of the (locked) task and write the assignment; False if no slot is free."""
        if not self.is_sqlite:  # one statement: the counter moves and the assignment is written, or neither
            return conn.execute(self._sql.take, {"tid": task_id, "aid": annotator_id, "now": now, "lease": lease}).rowcount == 1
        if conn.execute(self._sql.bump, {"tid": task_id}).rowcount != 1:
            return False
        conn.execute(self._sql.assign, self._assignment_row(task_id, annotator_id, now, lease, False))
        return True

    @staticmethod
    def _assignment_row(task_id: int, annotator_id: int, now: datetime, lease: datetime, extra: bool) -> dict[str, Any]:
        return {
            "task_id": task_id,
            "annotator_id": annotator_id,
            "status": "pending",
            "assigned_at": now,
            "lease_expires_at": lease,
            "extra": extra,
        }

    def _claim_extra(
        self, conn: Connection, project_id: int, st: StageConfig, annotator_id: int, now: datetime, lease: datetime
    ) -> Any:
        """A probation annotator's next regular task: one that already has a trusted judgment (so the
        extra label is never an item's only one), open or done, with the fewest extra judgments and
        fewer than the stage's ``probation_extra``; the assignment (extra, no slot) is written. No row
        lock: an extra judgment takes no slot, so two concurrent claims can at worst go one over that soft cap."""
        mine = exists().where(_A.c.task_id == _T.c.id, _A.c.annotator_id == annotator_id)
        extras = (
            select(func.count())
            .select_from(_A)
            .where(_A.c.task_id == _T.c.id, _A.c.extra.is_(True), _A.c.status.in_(("pending", "submitted")))
            .scalar_subquery()
        )
        q = (
            select(*_TASK_COLS)
            .where(
                _T.c.project_id == project_id,
                _T.c.stage == st.name,
                _T.c.status.in_(("open", "done")),
                extras < st.probation_extra,
                _T.c.is_gold.is_(False),
                _T.c.type.in_(LABEL_TASKS),  # a written output needs its slot; only labels can be extra
                _T.c.n_done >= 1,
                not_(mine),
            )
            .order_by(extras, _T.c.id)
        )
        for task in conn.execute(q.limit(20)):
            if annotator_id not in (task.author_ids or []):
                conn.execute(self._sql.assign, self._assignment_row(task.id, annotator_id, now, lease, True))
                return task
        return None

    def _config(self, s: Session, project_id: int) -> ProjectConfig:
        if project_id not in self._configs:
            self._configs[project_id] = ProjectConfig.model_validate(s.get_one(Project, project_id).config)
        return self._configs[project_id]

    def _view(self, s: Session, task: Any, lease: datetime, draft: dict | None = None) -> TaskView:
        """What the annotator sees of ``task`` (a Task or a row of the hot path's columns)."""
        ids = list(task.response_ids or [])
        by_id: dict[int, str] = {}
        pairs = getattr(task, "response_texts", _NO_TEXTS)
        if pairs is not _NO_TEXTS:  # the claim brought the texts along (PostgreSQL)
            by_id = {int(p[0]): p[1] for p in cast(list, pairs) or [] if p is not None}
            if task.prompt_text is not None:
                by_id[-1] = task.prompt_text
        else:
            # The prompt and the responses in one query (the prompt keyed -1: response ids are positive).
            parts = []
            if task.prompt_id:
                parts.append(select(literal(-1).label("id"), Prompt.text).where(Prompt.id == task.prompt_id))
            if ids:
                parts.append(select(Response.id, Response.text).where(Response.id.in_(ids)))
            if parts:
                q = parts[0] if len(parts) == 1 else union_all(*parts)
                by_id = {int(i): t for i, t in s.execute(q).all()}
        if task.prompt_id and -1 not in by_id:
            raise UnknownTask(f"task {task.id}: its prompt {task.prompt_id} is missing")
        prompt = by_id.pop(-1, None)
        texts = [by_id[r] for r in ids]
        suggestion = None
        if task.prelabel is not None:
            names = {st.name: st for st in self._config(s, task.project_id).stages}
            if task.stage in names and names[task.stage].show_prelabels:
                suggestion = dict(task.prelabel)
        return TaskView(
            id=task.id,
            type=task.type,
            stage=task.stage,
            prompt=prompt,
            responses=texts,
            payload=dict(task.payload or {}),
            lease_expires_at=lease,
            draft=draft,
            suggestion=suggestion,
        )

    def pending(self, annotator: str) -> list[TaskView]:
        """The annotator's open assignments (to resume after a crash or a reload)."""
        with self.read() as s:
            ann = self._annotator(s, annotator)
            rows = s.execute(
                select(Assignment, Task)
                .join(Task, Task.id == Assignment.task_id)
                .where(Assignment.annotator_id == ann.id, Assignment.status == "pending")
                .order_by(Assignment.id)
            ).all()
            return [self._view(s, t, a.lease_expires_at, a.draft) for a, t in rows]

    def save_draft(self, annotator: str, task_id: int, draft: dict[str, Any]) -> None:
        """Keep a half-finished answer server-side (not validated, not a judgment)."""
        with self.write() as s:
            asg = self._assignment(s, annotator, task_id)
            asg.draft = draft

    def skip(self, annotator: str, task_id: int) -> None:
        """Give a leased task back unanswered: its slot returns to the pool and this annotator is not
        offered it again (the assignment stays, marked ``skipped``)."""
        with self.write() as s:
            asg = self._assignment(s, annotator, task_id)
            asg.status, asg.draft = "skipped", None
            if not asg.extra:
                s.get_one(Task, task_id).n_active -= 1

    # -- submission ------------------------------------------------------------------------------------
    def _annotator(self, s: Session, name: str) -> Annotator:
        a = s.scalar(select(Annotator).where(Annotator.name == name))
        if a is None:
            raise UnknownAnnotator(f"no annotator {name!r}")
        return a

    def _assignment(self, s: Session, annotator: str, task_id: int, ann: Annotator | None = None) -> Assignment:
        """The annotator's pending assignment of the task; ``ann`` given: the task row is locked already."""
        if ann is None:
            if s.get(Task, task_id, with_for_update=True) is None:
                raise UnknownTask(f"no task with id {task_id}")
            ann = self._annotator(s, annotator)
        asg = s.scalar(
            select(Assignment).where(Assignment.task_id == task_id, Assignment.annotator_id == ann.id).with_for_update()
        )
        if asg is None:
            raise NotAssigned(f"task {task_id} is not assigned to annotator {annotator!r}")
        if asg.status != "pending":
            raise LeaseExpired(f"task {task_id}: annotator {annotator!r}'s assignment is {asg.status}, not pending")
        return asg

    def submit(
        self,
        annotator: str,
        task_id: int,
        answer: dict[str, Any],
        now: datetime | None = None,
        idempotency_key: str | None = None,
        project: str | None = None,
    ) -> int:
        """Record one answer (one transaction); returns the annotation id. Raises UnknownTask /
        NotAssigned (also when the lease ran out, or when the task is not in ``project``) / NotAllowed /
        InvalidAnswer and writes nothing then. With ``idempotency_key``, a repeat of a submit that
        already committed returns its id."""
        now = now or utcnow()
        with self.write() as s:
            return self._submit(s, annotator, task_id, answer, now, idempotency_key, project)

    def submit_many(self, rows: Sequence[tuple[str, int, dict[str, Any], str | None]], now: datetime | None = None) -> list[bool]:
        """All-or-nothing: (annotator, task id, answer, idempotency key) rows in one transaction; any
        refusal raises (its ``row`` attribute is the 0-based row index) and nothing is stored. Returns,
        per row, whether it was new (False: its idempotency key was already stored, say by an earlier
        run of the same file)."""
        now = now or utcnow()
        out = []
        with self.write() as s:
            for i, (annotator, task_id, answer, key) in enumerate(rows):
                try:
                    before = (
                        s.scalar(
                            select(Annotation.id)
                            .join(Annotator, Annotator.id == Annotation.annotator_id)
                            .where(Annotator.name == annotator, Annotation.idempotency_key == key)
                        )
                        if key
                        else None
                    )
                    self._submit(s, annotator, task_id, answer, now, key, None)
                    out.append(before is None)
                except ValueError as err:  # FeedbackError, InvalidAnswer
                    err.row = i  # type: ignore[attr-defined]
                    raise
        return out

    def _submit(
        self,
        s: Session,
        annotator: str,
        task_id: int,
        answer: dict[str, Any],
        now: datetime,
        idempotency_key: str | None,
        project: str | None,
    ) -> int:
        """The common case in one locking query and one write (PostgreSQL), else :meth:`_submit_checked`."""
        conn = s.connection()
        row = conn.execute(self._sql.submit_row, {"name": annotator, "tid": task_id, "key": idempotency_key}).first()
        if row is None or row.prior_id is not None or row.asg_status != "pending":
            # Unknown task or person, not assigned, a repeat, or an assignment no longer open (say a
            # concurrent submit committed it while this one waited for the lock, which this query's
            # snapshot cannot tell from a repeat): the careful path, a statement at a time, each seeing
            # everything committed before it, decides and answers (the locks are held already).
            return self._submit_checked(s, annotator, task_id, answer, now, idempotency_key, project)
        if project is not None and row.project_id != self.project(project)[0]:
            raise NotAssigned(f"task {task_id} is not in project {project!r}")
        status = row.m_status or row.a_status
        if status in ("excluded", "flagged"):
            raise NotAllowed(f"annotator {annotator!r} is {status}; their answers are no longer taken")
        if row.lease_expires_at < now:
            raise LeaseExpired(f"task {task_id}: the lease of annotator {annotator!r} expired at {row.lease_expires_at}")
        clean = validate_answer(row.type, answer, row.payload)
        if not self.is_sqlite:
            params = {"tid": task_id, "aid": row.aid, "asg": row.asg_id, "answer": clean, "key": idempotency_key, "now": now}
            note_id = conn.execute(self._sql.write_submit[bool(row.extra)], params).scalar_one()
        else:
            note_id = conn.execute(
                self._sql.note,
                {
                    "task_id": task_id,
                    "annotator_id": row.aid,
                    "assignment_id": row.asg_id,
                    "answer": clean,
                    "idempotency_key": idempotency_key,
                    "created_at": now,
                },
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(self._sql.answered, {"asg": row.asg_id, "now": now})
            if not row.extra:
                conn.execute(self._sql.done, {"tid": task_id})
        if row.extra:  # beyond the overlap: counts for nothing in the task's own progress
            return int(note_id)
        self._outputs(s, row, row.aid, clean)
        if not row.is_gold and row.n_done + 1 >= row.overlap:
            self._maybe_close(s, s.get_one(Task, task_id), now)
        s.flush()
        return int(note_id)

    def _submit_checked(
        self,
        s: Session,
        annotator: str,
        task_id: int,
        answer: dict[str, Any],
        now: datetime,
        idempotency_key: str | None,
        project: str | None,
    ) -> int:
        task = s.get(Task, task_id, with_for_update=True)  # serialises submits of one task (PostgreSQL)
        if task is None:
            raise UnknownTask(f"no task with id {task_id}")
        if project is not None and task.project_id != self.project(project)[0]:
            raise NotAssigned(f"task {task_id} is not in project {project!r}")
        if idempotency_key is None:
            ann, me, _ = self._annotator_here(s, task.project_id, annotator)
        else:
            # A repeat of a committed submit (its key stored with its annotation): found in the same query.
            def prior(col: Any) -> Any:
                return (
                    select(col)
                    .where(Annotation.annotator_id == Annotator.id, Annotation.idempotency_key == idempotency_key)
                    .scalar_subquery()
                )

            ann, me, (prior_id, prior_task) = self._annotator_here(
                s, task.project_id, annotator, False, prior(Annotation.id), prior(Annotation.task_id)
            )
            if prior_id is not None:
                if prior_task != task_id:
                    raise FeedbackError(f"idempotency key {idempotency_key!r} was used for task {prior_task}")
                return int(prior_id)
        if me.status in ("excluded", "flagged"):
            raise NotAllowed(f"annotator {annotator!r} is {me.status}; their answers are no longer taken")
        asg = self._assignment(s, annotator, task_id, ann)
        if asg.lease_expires_at < now:
            raise LeaseExpired(f"task {task_id}: the lease of annotator {annotator!r} expired at {asg.lease_expires_at}")
        clean = validate_answer(task.type, answer, task.payload)
        note = Annotation(
            task_id=task.id,
            annotator_id=ann.id,
            assignment_id=asg.id,
            answer=clean,
            created_at=now,
            idempotency_key=idempotency_key,
        )
        s.add(note)
        asg.status, asg.submitted_at, asg.draft = "submitted", now, None
        if asg.extra:  # beyond the overlap: counts for nothing in the task's own progress
            s.flush()
            return note.id
        task.n_done += 1
        self._outputs(s, task, ann.id, clean)
        if not task.is_gold and task.n_done >= task.overlap:
            self._maybe_close(s, task, now)
        s.flush()
        return note.id

    def _outputs(self, s: Session, task: Any, annotator_id: int, answer: dict[str, Any]) -> None:
        """Writing tasks produce items for the next stage, in the same transaction (``task``: a Task or a row)."""
        if task.is_gold:
            return
        if task.type == "write_prompt":
            s.add(Prompt(project_id=task.project_id, text=answer["text"], author_id=annotator_id, source=f"stage:{task.stage}"))
        elif task.type == "write_completion":
            s.add(Response(prompt_id=task.prompt_id, text=answer["text"], author_id=annotator_id, domain=answer["domain"]))

    def _maybe_close(self, s: Session, task: Task, now: datetime) -> None:
        answers = list(
            s.scalars(
                select(Annotation.answer)
                .join(Assignment, Assignment.id == Annotation.assignment_id)
                .where(Annotation.task_id == task.id, Assignment.status == "submitted", Assignment.extra.is_(False))
            )
        )
        labels = [label_of(task.type, a) for a in answers]
        top, share, tied = None, 1.0, False
        if labels and labels[0] is not None:
            top, count = Counter(labels).most_common(1)[0]
            share = count / len(labels)
            # a tie at the top is not agreement
            if sum(1 for c in Counter(labels).values() if c == count) > 1:
                top, share, tied = None, min(share, 0.5), True
        st = self._config(s, task.project_id).stage(task.stage)
        if share < st.agreement_threshold and task.overlap < task.max_overlap:
            task.overlap += 1  # dynamic overlap: ask one more person
            return
        task.status, task.completed_at = "done", now
        dynamic = task.max_overlap > st.overlap
        if len(labels) > 1 and (tied or (dynamic and share < st.agreement_threshold)):
            # No majority, or the overlap ceiling was reached below the bar: a person should look.
            why = "no majority" if tied else f"top answer's share {share:.2f} below {st.agreement_threshold}"
            s.add(
                Flag(
                    project_id=task.project_id,
                    task_id=task.id,
                    kind="disagreement",
                    reason=f"{why} after {len(labels)} judgments",
                    created_at=now,
                )
            )
        if task.type == "verify_prompt" and task.prompt_id is not None:
            s.get_one(Prompt, task.prompt_id).status = "accepted" if top == "accept" else "rejected"
        elif task.type == "review_completion" and task.response_ids:
            resp = s.get_one(Response, task.response_ids[0])
            if top == "edit":
                edits = [a["edited_text"] for a in answers if a["decision"] == "edit"]
                resp.status = "rejected"
                s.add(
                    Response(
                        prompt_id=resp.prompt_id,
                        text=edits[-1],
                        author_id=resp.author_id,
                        domain=resp.domain,
                        status="accepted",
                        parent_id=resp.id,
                        meta={"edited_by_review": task.id},
                    )
                )
            else:
                resp.status = "accepted" if top == "accept" else "rejected"

    # -- the review queue -----------------------------------------------------------------------------
    def flag(self, annotator: str, task_id: int, reason: str) -> int:
        """An annotator reports the task leased to them (broken, unsafe, unanswerable): it goes to the
        review queue and the lease is given back as a skip. Returns the flag id."""
        reason = (reason or "").strip()
        if not reason:
            raise FeedbackError("a report needs a reason")
        with self.write() as s:
            asg = self._assignment(s, annotator, task_id)
            task = s.get_one(Task, task_id)
            f = Flag(
                project_id=task.project_id, task_id=task_id, annotator_id=asg.annotator_id, kind="report", reason=reason[:2000]
            )
            s.add(f)
            asg.status, asg.draft = "skipped", None
            if not asg.extra:
                task.n_active -= 1
            s.flush()
            return f.id

    def flags(self, project: str, status: str | None = "open") -> list[dict[str, Any]]:
        """The review queue (for a project's admins only: it shows everyone's answers and gold)."""
        pid, _ = self.project(project)
        with self.read() as s:
            q = select(Flag).where(Flag.project_id == pid).order_by(Flag.id)
            if status:
                q = q.where(Flag.status == status)
            out = []
            for f in s.scalars(q):
                task = s.get_one(Task, f.task_id)
                judged = s.execute(
                    select(Annotator.name, Annotation.answer)
                    .join(Annotator, Annotator.id == Annotation.annotator_id)
                    .where(Annotation.task_id == task.id)
                    .order_by(Annotation.id)
                ).all()
                gold = s.scalar(select(GoldAnswer.answer).where(GoldAnswer.task_id == task.id))
                view = self._view(s, task, task.created_at)
                out.append(
                    {
                        "id": f.id,
                        "kind": f.kind,
                        "reason": f.reason,
                        "status": f.status,
                        "reported_by": s.get_one(Annotator, f.annotator_id).name if f.annotator_id else None,
                        "created_at": f.created_at.isoformat(),
                        "resolution": f.resolution,
                        "task": {
                            "id": task.id,
                            "type": task.type,
                            "stage": task.stage,
                            "status": task.status,
                            "prompt": view.prompt,
                            "responses": view.responses,
                            "payload": view.payload,
                            "is_gold": task.is_gold,
                            "gold": gold,
                        },
                        "judgments": [{"annotator": n, "answer": a} for n, a in judged],
                    }
                )
            return out

    def resolve_flag(self, project: str, flag_id: int, admin: str, action: str, answer: dict[str, Any] | None = None) -> None:
        """Close an open flag: ``dismiss`` it, ``reopen`` its task for one more judgment, or
        ``adjudicate`` it with the admin's own ``answer`` (checked against the task's schema;
        aggregation then takes it as the task's label)."""
        if action not in FLAG_ACTIONS:
            raise FeedbackError(f"action must be one of {FLAG_ACTIONS}, got {action!r}")
        pid, _ = self.project(project)
        with self.write() as s:
            f = s.get(Flag, flag_id, with_for_update=True)
            if f is None or f.project_id != pid:
                raise UnknownTask(f"no flag {flag_id} in project {project!r}")
            if f.status != "open":
                raise LeaseExpired(f"flag {flag_id} is already {f.status}")
            task = s.get_one(Task, f.task_id, with_for_update=True)
            if action == "adjudicate":
                if answer is None:
                    raise FeedbackError("adjudicate needs the answer")
                f.resolution = validate_answer(task.type, answer, task.payload)
            elif action == "reopen" and not task.is_gold:
                task.overlap += 1
                task.max_overlap = max(task.max_overlap, task.overlap)
                task.status, task.completed_at = "open", None
            f.status = {"dismiss": "dismissed", "reopen": "reopened", "adjudicate": "adjudicated"}[action]
            f.resolved_by, f.resolved_at = self._annotator(s, admin).id, utcnow()

    def adjudications(self, project: str, stage: str | None = None) -> dict[int, dict[str, Any]]:
        """task id -> the admin's answer, for tasks decided in the review queue (the latest decision)."""
        pid, _ = self.project(project)
        with self.read() as s:
            q = (
                select(Flag.task_id, Flag.resolution)
                .join(Task, Task.id == Flag.task_id)
                .where(Flag.project_id == pid, Flag.status == "adjudicated")
                .order_by(Flag.resolved_at, Flag.id)
            )
            if stage:
                q = q.where(Task.stage == stage)
            return {tid: ans for tid, ans in s.execute(q).all() if ans is not None}

    # -- reading back --------------------------------------------------------------------------------
    def judgments(
        self, project: str, stage: str | None = None, include_gold: bool = True, statuses: Sequence[str] = ("active", "candidate")
    ) -> list[Judgment]:
        """Every raw judgment (oldest first) by annotators whose status in the project is in ``statuses``."""
        pid, _ = self.project(project)
        with self.read() as s:
            q = (
                select(
                    Annotation.task_id,
                    Annotation.answer,
                    Annotation.created_at,
                    Task.type,
                    Task.stage,
                    Task.is_gold,
                    Task.prompt_id,
                    Task.response_ids,
                    Annotator.name,
                    Annotator.id,
                    GoldAnswer.answer,
                )
                .join(Task, Task.id == Annotation.task_id)
                .join(Annotator, Annotator.id == Annotation.annotator_id)
                .outerjoin(Membership, (Membership.annotator_id == Annotator.id) & (Membership.project_id == pid))
                .outerjoin(GoldAnswer, GoldAnswer.task_id == Task.id)
                .where(Task.project_id == pid, func.coalesce(Membership.status, Annotator.status).in_(list(statuses)))
                .order_by(Annotation.id)
            )
            if stage:
                q = q.where(Task.stage == stage)
            if not include_gold:
                q = q.where(Task.is_gold.is_(False))
            out = []
            for tid, answer, created, ttype, tstage, is_gold, prompt_id, rids, name, aid, gold in s.execute(q).all():
                out.append(
                    Judgment(
                        task_id=tid,
                        annotator=name,
                        annotator_id=aid,
                        task_type=ttype,
                        stage=tstage,
                        answer=answer,
                        label=label_of(ttype, answer),
                        is_gold=is_gold,
                        created_at=created,
                        gold_label=label_of(ttype, gold) if gold is not None else None,
                        prompt_id=prompt_id,
                        response_ids=list(rids or []),
                    )
                )
            return out

    def tasks(self, project: str, stage: str | None = None, include_gold: bool = False) -> list[Task]:
        pid, _ = self.project(project)
        with self.read() as s:
            q = select(Task).where(Task.project_id == pid).order_by(Task.id)
            if stage:
                q = q.where(Task.stage == stage)
            if not include_gold:
                q = q.where(Task.is_gold.is_(False))
            return list(s.scalars(q))

    def count_tasks(self, project: str, stage: str | None = None, status: str | None = None) -> int:
        """Number of non-gold tasks (of ``stage``, with ``status``): one COUNT, for progress bars."""
        pid, _ = self.project(project)
        with self.read() as s:
            q = select(func.count()).select_from(Task).where(Task.project_id == pid, Task.is_gold.is_(False))
            if stage:
                q = q.where(Task.stage == stage)
            if status:
                q = q.where(Task.status == status)
            return s.execute(q).scalar_one()

    def counts(self) -> dict[str, int]:
        """Row count of every table (tests use it to prove a refused request changed nothing)."""
        with self.read() as s:
            return {t.name: s.execute(select(func.count()).select_from(t)).scalar_one() for t in Base.metadata.sorted_tables}

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table, for exact before/after comparisons in tests."""
        with self.read() as s:
            return {t.name: sorted(tuple(map(repr, r)) for r in s.execute(select(t)).all()) for t in Base.metadata.sorted_tables}


__all__ = [
    "FeedbackStore",
    "FeedbackError",
    "UnknownTask",
    "UnknownAnnotator",
    "NotAssigned",
    "TooManyPending",
    "NotAllowed",
    "LeaseExpired",
    "InvalidAnswer",
    "TaskView",
    "Judgment",
    "Person",
]
