"""Tokens: tenant admin tokens and signed, expiring user tokens tied to userID + platformID.

A user token is `u.<payload>.<hmac>`, the payload naming tenant, user, platform,
token ID (jti) and expiry, the HMAC keyed with the tenant's secret. Its jti must
still be the live one for that user and platform: a re-login replaces it (the
old token answers 1502) and /auth/force_logout removes it (1502 too, as OpenIM's
kicked state).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .clock import now_ms
from .context import Actor
from .db.models import Tenant, UserToken
from .errors import TokenInvalid, TokenKicked

ADMIN_PREFIX = "adm."
USER_PREFIX = "u."


def hash_admin_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_admin_token() -> str:
    return ADMIN_PREFIX + secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class _Claims:
    tenant_id: str
    user_id: str
    platform_id: int
    jti: str
    expire_ms: int


class Tokens:
    """Issues and checks tokens. Caches tenant secrets and, on a single node, live jtis."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, ttl_seconds: int,
                 cache_live_tokens: bool = True) -> None:
        self._sessions = sessions
        self._ttl = ttl_seconds
        self._secrets: dict[str, bytes] = {}
        self._admins: dict[str, str] = {}
        # (tenant, user, platform) -> live jti; only trusted when this node is the only writer.
        self._live: dict[tuple[str, str, int], str | None] | None = (
            {} if cache_live_tokens else None)

    async def _secret(self, session: AsyncSession, tenant_id: str) -> bytes | None:
        key = self._secrets.get(tenant_id)
        if key is None:
            row = await session.get(Tenant, tenant_id)
            if row is None:
                return None
            key = self._secrets[tenant_id] = row.token_secret.encode()
        return key

    async def issue(self, session: AsyncSession, tenant_id: str, user_id: str,
                    platform_id: int) -> tuple[str, int]:
        """A new token for user+platform; the previous one of that platform is kicked.
        Runs inside the caller's transaction."""
        key = await self._secret(session, tenant_id)
        assert key is not None, "tenant vanished"
        jti = secrets.token_hex(8)
        expire_ms = now_ms() + self._ttl * 1000
        row = await session.get(UserToken, (tenant_id, user_id, platform_id))
        if row is None:
            session.add(UserToken(tenant_id=tenant_id, user_id=user_id,
                                  platform_id=platform_id, jti=jti, expire_time=expire_ms))
        else:
            row.jti, row.expire_time = jti, expire_ms
        payload = _b64(orjson.dumps({"t": tenant_id, "u": user_id, "p": platform_id,
                                     "j": jti, "e": expire_ms}))
        sig = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
        return f"{USER_PREFIX}{payload}.{sig}", self._ttl

    def remember(self, tenant_id: str, user_id: str, platform_id: int, jti: str | None) -> None:
        """Called after commit, so the cache never holds an uncommitted jti."""
        if self._live is not None:
            self._live[(tenant_id, user_id, platform_id)] = jti

    @staticmethod
    def jti_of(token: str) -> str:
        return orjson.loads(_unb64(token[len(USER_PREFIX):].split(".", 1)[0]))["j"]  # type: ignore[no-any-return]

    async def revoke(self, session: AsyncSession, tenant_id: str, user_id: str,
                     platform_id: int) -> bool:
        result = await session.execute(delete(UserToken).where(
            UserToken.tenant_id == tenant_id, UserToken.user_id == user_id,
            UserToken.platform_id == platform_id))
        return bool(getattr(result, "rowcount", 0))

    async def verify(self, token: str) -> Actor:
        """The actor a token stands for; TokenInvalid or TokenKicked otherwise."""
        if not token:
            raise TokenInvalid("token header missing")
        if token.startswith(ADMIN_PREFIX):
            return await self._verify_admin(token)
        if not token.startswith(USER_PREFIX):
            raise TokenInvalid()
        claims = self._parse(token)
        async with self._sessions() as session:
            key = await self._secret(session, claims.tenant_id)
            if key is None:
                raise TokenInvalid()
            body, _, sig = token[len(USER_PREFIX):].rpartition(".")
            expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(expected, sig):
                raise TokenInvalid()
            if claims.expire_ms < now_ms():
                raise TokenInvalid("token expired")
            live = await self._live_jti(session, claims)
        if live != claims.jti:
            raise TokenKicked("token kicked: logged in elsewhere or logged out")
        return Actor(claims.tenant_id, claims.user_id, claims.platform_id)

    async def _live_jti(self, session: AsyncSession, c: _Claims) -> str | None:
        k = (c.tenant_id, c.user_id, c.platform_id)
        if self._live is not None and k in self._live:
            return self._live[k]
        row = await session.get(UserToken, k)
        jti = row.jti if row is not None else None
        if self._live is not None:
            self._live[k] = jti
        return jti

    @staticmethod
    def _parse(token: str) -> _Claims:
        try:
            body = token[len(USER_PREFIX):].rpartition(".")[0]
            d = orjson.loads(_unb64(body))
            return _Claims(str(d["t"]), str(d["u"]), int(d["p"]), str(d["j"]), int(d["e"]))
        except Exception:
            raise TokenInvalid() from None

    async def _verify_admin(self, token: str) -> Actor:
        digest = hash_admin_token(token)
        tenant_id = self._admins.get(digest)
        if tenant_id is None:
            async with self._sessions() as session:
                tenant_id = (await session.execute(
                    select(Tenant.tenant_id).where(Tenant.admin_token_hash == digest)
                )).scalar_one_or_none()
            if tenant_id is None:
                raise TokenInvalid()
            self._admins[digest] = tenant_id
        return Actor(tenant_id)
