"""Request-model conventions shared by every route."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

# IDs are caller-chosen strings (OpenIM style), never empty, never longer than a column.
ID = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(max_length=65535)]
Name = Annotated[str, StringConstraints(max_length=255)]
URL = Annotated[str, StringConstraints(max_length=1024)]
# Seqs and times are stored in 64-bit columns: a larger number is the client's 1001, not
# the database driver's overflow.
MAX_INT64 = 2**63 - 1
Seq = Annotated[int, Field(ge=0, le=MAX_INT64)]  # a seq bound (begin, end)
Millis = Seq  # a unix-ms time: the same bound
StoredSeq = Annotated[int, Field(ge=1, le=MAX_INT64)]  # a message's: seqs start at 1


class Req(BaseModel):
    """Strict types (a number is not a string); unknown fields ignored, as OpenIM sends extras."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Pagination(Req):
    # An int32, as OpenIM's: the page's offset then always fits the database's 64 bits.
    pageNumber: int = Field(default=1, ge=1, le=2**31 - 1)
    showNumber: int = Field(default=100, ge=1, le=1000)


async def page(session: AsyncSession, query: Select[Any], p: Pagination
               ) -> tuple[list[Any], int]:
    """One page of `query`'s rows and the total count."""
    total = (await session.execute(
        select(func.count()).select_from(query.order_by(None).subquery()))).scalar_one()
    rows = (await session.execute(
        query.limit(p.showNumber).offset((p.pageNumber - 1) * p.showNumber))).scalars().all()
    return list(rows), int(total)


def revalidate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate a payload that before hooks changed; a broken change is the client's 1001."""
    from pydantic import ValidationError

    from ..client_json import NUL_REFUSED, nul_path
    from ..errors import BadArgument

    where = nul_path(data)
    if where is not None:
        raise BadArgument(f"changed by a hook, then invalid: {where}: {NUL_REFUSED}")
    try:
        return model.model_validate(data, strict=False)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        raise BadArgument(f"changed by a hook, then invalid: {loc}: {err['msg']}") from None
