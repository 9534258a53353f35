"""Imports every table module so that `metadata` holds the whole schema (for Alembic)."""

from __future__ import annotations

from . import models  # noqa: F401
from .base import Base

metadata = Base.metadata
