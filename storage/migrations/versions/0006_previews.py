"""The live preview: a ``previews`` table holding the latest step preview of each running AI
generation (a small JPEG, replaced at each step, removed when the run ends).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "previews",
        sa.Column("generation_id", sa.Integer(), primary_key=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"], name="fk_previews_generation_id_generations",
                                ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("previews")
