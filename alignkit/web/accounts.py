"""Accounts, project memberships and invitations, stored next to the feedback data.

A person is one :class:`~alignkit.feedback.models.Annotator` (the store's identity, with its
screening status) plus one :class:`~alignkit.feedback.models.Account` (password, API token) and
a :class:`~alignkit.feedback.models.Membership` per project with a role: ``annotator``,
``reviewer`` (may also take reviewer stages) or ``admin`` (runs the project), and the person's
screening state there (a candidate in a project with gold until screened on *its* gold). Roles
never leak between projects: the person's own row keeps role ``annotator`` (``admin`` only for a
server-wide admin), so reviewing in one project opens no reviewer stage in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from alignkit.feedback.models import Account, Annotator, Invitation, Membership, Project, Task, utcnow
from alignkit.feedback.store import ROLES, FeedbackError, FeedbackStore
from alignkit.web.security import hash_password, new_token, token_hash, verify_password

MIN_PASSWORD = 8


@dataclass
class User:
    id: int
    name: str
    role: str  # server-wide role: admin, or the role the store checks for reviewer stages
    status: str
    memberships: dict[str, str]  # project name -> role there

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def project_role(self, project: str) -> str | None:
        return "admin" if self.is_admin else self.memberships.get(project)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise FeedbackError(f"a password needs at least {MIN_PASSWORD} characters")


def _user(store: FeedbackStore, where: Any) -> User | None:
    """The person and their project roles in one query (it runs on every request)."""
    with store.read() as s:
        rows = s.execute(
            select(Annotator.id, Annotator.name, Annotator.role, Annotator.status, Project.name, Membership.role)
            .select_from(Annotator)
            .outerjoin(Membership, Membership.annotator_id == Annotator.id)
            .outerjoin(Project, Project.id == Membership.project_id)
            .where(where)
        ).all()
    if not rows:
        return None
    aid, name, role, status = rows[0][:4]
    return User(id=aid, name=name, role=role, status=status, memberships={p: r for *_, p, r in rows if p is not None})


def load_user(store: FeedbackStore, annotator_id: int) -> User | None:
    return _user(store, Annotator.id == annotator_id)


def authenticate(store: FeedbackStore, name: str, password: str) -> User | None:
    with store.read() as s:
        row = s.execute(
            select(Annotator.id, Account.password_hash)
            .join(Account, Account.annotator_id == Annotator.id)
            .where(Annotator.name == name)
        ).first()
    if row is None:
        verify_password(hash_password("not-a-user-x"), password)  # same work either way: no user enumeration by timing
        return None
    return load_user(store, row[0]) if verify_password(row[1], password) else None


def user_by_token(store: FeedbackStore, token: str) -> User | None:
    found = select(Account.annotator_id).where(Account.api_token_hash == token_hash(token)).scalar_subquery()
    return _user(store, Annotator.id == found)


def new_api_token(store: FeedbackStore, annotator_id: int) -> str:
    """Issue a fresh API token (the previous one stops working); it is shown once."""
    token = new_token()
    with store.write() as s:
        acc = s.scalar(select(Account).where(Account.annotator_id == annotator_id))
        if acc is None:
            raise FeedbackError("no account")
        acc.api_token_hash = token_hash(token)
    store.people_changed()  # the old token stops working at the next request
    return token


def _start_status(s: Session, project_id: int | None, role: str, status: str | None) -> str:
    """A plain annotator in a project with gold starts as a screening candidate there."""
    if status is not None:
        return status
    has_gold = project_id is not None and s.scalar(select(exists().where(Task.project_id == project_id, Task.is_gold.is_(True))))
    return "candidate" if role == "annotator" and has_gold else "active"


def _create(s: Session, name: str, password: str, project_id: int | None, role: str, status: str | None) -> int:
    _check_password(password)
    if role not in ROLES:
        raise FeedbackError(f"role must be one of {ROLES}")
    if not name or len(name) > 200:
        raise FeedbackError("a name of 1 to 200 characters is needed")
    if s.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
        raise FeedbackError(f"the name {name!r} is taken")
    status = _start_status(s, project_id, role, status)
    global_role = "admin" if project_id is None and role == "admin" else "annotator"
    a = Annotator(name=name, role=global_role, status=status)
    s.add(a)
    s.flush()
    s.add(Account(annotator_id=a.id, password_hash=hash_password(password)))
    if project_id is not None:
        s.add(Membership(annotator_id=a.id, project_id=project_id, role=role, status=status))
    s.flush()
    return a.id


def create_account(
    store: FeedbackStore, name: str, password: str, project: str | None = None, role: str = "annotator", status: str | None = None
) -> int:
    """Create a person with a login (invitations, tests and the load benchmark use it).
    ``project`` None with ``role`` admin: a server-wide admin. ``status`` None: screened if the
    project has gold."""
    pid = store.project(project)[0] if project else None
    with store.write() as s:
        aid = _create(s, name, password, pid, role, status)
    store.people_changed()
    return aid


def invite(store: FeedbackStore, project: str | None, role: str = "annotator", status: str = "auto", days: float = 7.0) -> str:
    """A one-use invitation token to ``project`` with ``role`` (``project`` None: server admin)."""
    if role not in ROLES:
        raise FeedbackError(f"role must be one of {ROLES}")
    if status not in ("auto", "candidate", "active"):
        raise FeedbackError("status must be auto (screened when the project has gold), candidate or active")
    pid = store.project(project)[0] if project else None
    token = new_token()
    with store.write() as s:
        s.add(
            Invitation(
                token_hash=token_hash(token),
                project_id=pid,
                role=role if pid else "admin",
                status=status,
                expires_at=utcnow() + timedelta(days=days),
            )
        )
    return token


def accept_invitation(
    store: FeedbackStore, token: str, name: str | None = None, password: str | None = None, user: User | None = None
) -> int:
    """Use an invitation (one transaction): a new person signs up with ``name``/``password``, or a
    signed-in ``user`` joins one more project. Returns the annotator id."""
    with store.write() as s:
        inv = s.scalar(select(Invitation).where(Invitation.token_hash == token_hash(token)).with_for_update())
        if inv is None or inv.used_by is not None or inv.expires_at < utcnow():
            raise FeedbackError("this invitation is unknown, used or expired")
        if user is None:
            if password is None:
                raise FeedbackError("a name and a password are needed")
            aid = _create(
                s, (name or "").strip(), password, inv.project_id, inv.role, None if inv.status == "auto" else inv.status
            )
        else:
            aid = user.id
            ann = s.get_one(Annotator, aid)
            if inv.project_id is None:
                ann.role = "admin"
            elif (
                s.scalar(select(Membership).where(Membership.annotator_id == aid, Membership.project_id == inv.project_id))
                is None
            ):
                # Screened afresh in this project: being admitted elsewhere says nothing about it.
                status = _start_status(s, inv.project_id, inv.role, None if inv.status == "auto" else inv.status)
                s.add(Membership(annotator_id=aid, project_id=inv.project_id, role=inv.role, status=status))
        inv.used_by = aid
    store.people_changed()
    return aid


def has_admin(store: FeedbackStore) -> bool:
    with store.read() as s:
        return (
            s.scalar(
                select(Account.id).join(Annotator, Annotator.id == Account.annotator_id).where(Annotator.role == "admin").limit(1)
            )
            is not None
        )
