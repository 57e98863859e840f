"""Request version 2: a run record beside the request, and background pictures in the image store.

Adds ``generations.record`` (JSON: what ran, core.record) and ``generations.background_sha256``
(the picture of an image background, stored like every other input). Stored version-1 requests
also held what ran and storage keys; their sizes move into the record (as ``input_size`` and
``work_size``), and a picture background's path (``image:PATH``, a file outside the store) is
kept there as ``background_path`` so a re-run can still find the file. The request JSON itself
is left as it was written: core.request upgrades version 1 to 2 when it is read.

Revision ID: 0003
Revises: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("record", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("background_sha256", sa.String(64), nullable=True))
        batch.create_foreign_key("fk_generations_background_sha256_images", "images", ["background_sha256"], ["sha256"])
        batch.create_index("ix_generations_background_sha256", ["background_sha256"])
    generations = sa.table("generations", sa.column("id", sa.Integer), sa.column("request", sa.JSON),
                           sa.column("record", sa.JSON))
    connection = op.get_bind()
    for row_id, request in connection.execute(sa.select(generations.c.id, generations.c.request)).all():
        if isinstance(request, str):  # some drivers hand JSON back as text
            request = json.loads(request)
        if not isinstance(request, dict) or "version" in request:
            continue
        record = {}
        if request.get("input_width"):
            record["input_size"] = [request["input_width"], request["input_height"]]
        if request.get("work_width"):
            record["work_size"] = [request["work_width"], request["work_height"]]
        background = str(request.get("background", ""))
        if background.startswith("image:"):
            record["background_path"] = background[len("image:"):]
        if record:
            connection.execute(generations.update().where(generations.c.id == row_id).values(record=record))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_background_sha256")
        batch.drop_constraint("fk_generations_background_sha256_images", type_="foreignkey")
        batch.drop_column("background_sha256")
        batch.drop_column("record")
