"""What a before handler answers: allow (with changes), deny, or drop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["allow", "deny", "drop"]


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action = "allow"
    changes: dict[str, Any] = field(default_factory=dict)
    err_code: int = 0
    err_msg: str = ""

    @classmethod
    def allow(cls, changes: dict[str, Any] | None = None) -> Verdict:
        return cls("allow", changes or {})

    @classmethod
    def deny(cls, err_code: int = 5000, err_msg: str = "") -> Verdict:
        return cls("deny", {}, err_code or 5000, err_msg)

    @classmethod
    def drop(cls) -> Verdict:
        return cls("drop")


ALLOW = Verdict()
