"""per-project screening state, the review queue (flags), content keys for idempotent imports, an
index in the assigner's order

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("super_rater", sa.Boolean(), nullable=True))
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_prompt_content_key", ["project_id", "content_key"])
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_task_content_key", ["project_id", "content_key"])
    op.create_index(
        "ix_tasks_claim", "tasks", ["project_id", "stage", "status", "is_gold", sa.text("n_active DESC"), "id"], unique=False
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resolution", sa.JSON(), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"]),
        sa.ForeignKeyConstraint(["resolved_by"], ["annotators.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flags_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_flags_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flags_task_id"))
        batch_op.drop_index(batch_op.f("ix_flags_project_id"))
    op.drop_table("flags")
    op.drop_index("ix_tasks_claim", table_name="tasks")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint("uq_task_content_key", type_="unique")
        batch_op.drop_column("content_key")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_prompt_content_key", type_="unique")
        batch_op.drop_column("content_key")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_column("super_rater")
        batch_op.drop_column("status")
