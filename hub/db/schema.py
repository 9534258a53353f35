"""Imports every table module so that `metadata` holds the whole schema (for Alembic)."""

from __future__ import annotations

from . import chat, delivery, models, presence, webhook_config  # noqa: F401
from .base import Base

metadata = Base.metadata
