"""Typed ORM models. The schema here must equal the Alembic head (tests compare them).

JSON columns are plain ``JSON``: code always assigns a whole new dict/list, never mutates one
in place, so SQLAlchemy sees every change on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint,
                        text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.db import UTCDateTime, utcnow


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Image(Base):
    """One file in the content-addressed store (inputs, masks, outputs)."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    format: Mapped[str] = mapped_column(String(8))  # file extension: png, jpg, webp...
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_status_id", "status", "id"),
        Index("ix_generations_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # GenerationRequest.to_dict(): parameters, versioned
    record: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))  # what ran (core.record)
    prompt: Mapped[str] = mapped_column(Text, default="")
    background_kind: Mapped[str] = mapped_column(String(16), index=True)
    input_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    mask_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"), index=True)  # the mask used
    user_mask_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"), index=True)  # the mask given
    background_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"), index=True)  # an image background's picture
    status: Mapped[str] = mapped_column(String(16))  # storage.lifecycle.Status, which alone changes it
    progress_stage: Mapped[str] = mapped_column(String(32), default="")
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid:token of the claiming worker
    error: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    device: Mapped[str | None] = mapped_column(String(16))
    versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    models: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warnings: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    favourite: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id", ondelete="SET NULL"), index=True)
    # who made it (storage.users); None: made without accounts (the command line, a local app): admins see it
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    outputs: Mapped[list[Output]] = relationship(
        back_populates="generation", cascade="all, delete-orphan", order_by="(Output.kind, Output.index)"
    )


class Output(Base):
    """One image a generation produced: ``result`` per variant, ``cutout``, ``mask``."""

    __tablename__ = "outputs"
    __table_args__ = (UniqueConstraint("generation_id", "kind", "index", name="uq_outputs_generation_kind_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    index: Mapped[int] = mapped_column(Integer, default=0)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)

    generation: Mapped[Generation] = relationship(back_populates="outputs")
    image: Mapped[Image] = relationship(lazy="joined")


class Preview(Base):
    """The latest live preview of a running AI generation (storage.previews): one small JPEG per
    generation, replaced at each step and removed when the run ends."""

    __tablename__ = "previews"

    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """An account: signs in to the app with a password (or through the OIDC provider, by the
    name it gives), and to the HTTP API with its token. Admins see every generation."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("name", name="uq_users_name"),
                      UniqueConstraint("token_hash", name="uq_users_token_hash"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # argon2id; None: signs in through OIDC only
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    token_hash: Mapped[str | None] = mapped_column(String(64))  # sha256 of the API token
    token_created_at: Mapped[datetime | None]
    credentials_changed_at: Mapped[datetime] = mapped_column(default=utcnow)  # older sessions end
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignInSession(Base):
    """An app session signed in with a password, resumable from its browser tab after a reload
    (storage.sessions): the token's SHA-256, never the token, and when it lapses."""

    __tablename__ = "sign_in_sessions"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_sign_in_sessions_token_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
