"""Per-tenant webhook configuration: one row per tenant that has one.

The config is kept as JSON text, validated and with defaults filled in, so it reads back
as the operator wrote it. Its URL's signing secret is not here: the URL is also the
tenant's implicit delivery endpoint (`webhook_endpoints`, endpointID "config"), whose
secret signs before hooks and after events alike.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class WebhookConfigRow(Base):
    __tablename__ = "webhook_configs"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[str] = mapped_column(Text)
    # Unix milliseconds of the last write.
    updated_at: Mapped[int] = mapped_column(BigInteger)
