"""Initial schema: images, generations, outputs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("background_kind", sa.String(16), nullable=False),
        sa.Column("input_sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=False),
        sa.Column("mask_sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=True),
        sa.Column("user_mask_sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress_stage", sa.String(32), nullable=False),
        sa.Column("progress_step", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(16), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("favourite", sa.Boolean(), nullable=False),
        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("generations.id", ondelete="SET NULL"), nullable=True),
    )
    op.create_index("ix_generations_status_id", "generations", ["status", "id"])
    op.create_index("ix_generations_background_kind", "generations", ["background_kind"])
    op.create_index("ix_generations_favourite", "generations", ["favourite"])
    op.create_index("ix_generations_parent_id", "generations", ["parent_id"])
    op.create_index("ix_generations_input_sha256", "generations", ["input_sha256"])
    op.create_index("ix_generations_mask_sha256", "generations", ["mask_sha256"])
    op.create_index("ix_generations_user_mask_sha256", "generations", ["user_mask_sha256"])
    op.create_table(
        "outputs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("generation_id", sa.Integer(), sa.ForeignKey("generations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=False),
        sa.UniqueConstraint("generation_id", "kind", "index", name="uq_outputs_generation_kind_index"),
    )
    op.create_index("ix_outputs_image_sha256", "outputs", ["image_sha256"])


def downgrade() -> None:
    op.drop_table("outputs")
    op.drop_table("generations")
    op.drop_table("images")
