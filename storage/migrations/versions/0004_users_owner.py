"""Accounts and ownership: a ``users`` table (password hash, admin flag, API token hash) and
``generations.owner_id``.

Generations recorded before accounts existed keep no owner: they were made by whoever ran the
app or the command line on this machine, and an admin sees them (a user only sees their own).
No default user is invented for them: which account they should belong to is not known.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("token_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credentials_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
    )
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_generations_owner_id_users", "users", ["owner_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_generations_owner_id", ["owner_id"])


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_owner_id")
        batch.drop_constraint("fk_generations_owner_id_users", type_="foreignkey")
        batch.drop_column("owner_id")
    op.drop_table("users")
