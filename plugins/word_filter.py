"""Mask or refuse forbidden words in the user text that before hooks carry.

The fields looked at are each hook's `text_fields` (nicknames, group names and notices,
friend and join request messages, remarks, message content). Matching is by substring and
case-insensitive, so it works for languages written without spaces; the longest word wins
where two overlap.

`mask` replaces each match with as many `*` as it has characters. A field the hook does
not let a plugin change (a friend request's `reqMsg`, for one) cannot be masked, so a
match there is refused as in `deny`: letting it through would defeat the filter.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StringConstraints

from hub.bus import HOOKS, BeforeCall, Hook, Verdict
from hub.plugin import Plugin, PluginConfig

# Message content is a JSON string; these content types hold user text in these keys
# (101 text {"content"}, 106 @text and 114 quote {"text"} in OpenIM's SDK, {"content"} too).
_TEXT_CONTENT_TYPES = frozenset({101, 106, 114})
_TEXT_CONTENT_KEYS = ("content", "text")

Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class WordFilterConfig(PluginConfig):
    words: list[Word] = Field(min_length=1)
    action: Literal["deny", "mask"] = "mask"
    # 5100: in the hook range (5000 a hook's own denial, 5001 a hook failed), distinct from
    # both so a client can tell "your text was refused" from other denials.
    errCode: int = Field(default=5100, ge=1)
    errMsg: str = "text contains a forbidden word"


class WordFilter(Plugin):
    Config = WordFilterConfig
    hooks = frozenset(name for name, h in HOOKS.items() if h.is_before and h.text_fields)

    def __init__(self, config: PluginConfig) -> None:
        if not isinstance(config, WordFilterConfig):
            raise TypeError("WordFilter takes a WordFilterConfig")
        super().__init__(config)
        self._deny = Verdict.deny(config.errCode, config.errMsg)
        self._mask_mode = config.action == "mask"
        words = sorted({w.casefold() for w in config.words}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, words)), re.IGNORECASE)

    def mask(self, text: str) -> str:
        """`text` with every forbidden word replaced by `*` of the same length."""
        return self._pattern.sub(_stars, text)

    async def before(self, call: BeforeCall) -> Verdict:
        hook, payload = call.hook, call.payload
        changes: dict[str, Any] = {}
        for key, value in payload.items():
            cleaned = self._clean(hook, payload, key, value)
            if cleaned is _SAME:
                continue
            if not self._mask_mode or key not in hook.mutable:
                return self._deny
            changes[key] = cleaned
        return Verdict.allow(changes)

    def _clean(self, hook: Hook, payload: dict[str, Any], key: str, value: Any) -> Any:
        """The masked value of one payload field, or _SAME when it holds no forbidden word."""
        if key in hook.text_fields:
            if hook.messages and key == "content":
                return self._clean_content(payload.get("contentType"), value)
            if isinstance(value, str):
                return self._masked_or_same(value)
            return _SAME
        # Nested records: beforeUserRegister's `users` holds one nickname per user.
        if isinstance(value, list) and any(isinstance(item, dict) for item in value):
            out, changed = [], False
            for item in value:
                if isinstance(item, dict):
                    new = self._clean_record(hook, item)
                    changed |= new is not item
                    item = new
                out.append(item)
            return out if changed else _SAME
        return _SAME

    def _clean_record(self, hook: Hook, record: dict[str, Any]) -> dict[str, Any]:
        out = record
        for field in hook.text_fields:
            value = record.get(field)
            if isinstance(value, str):
                masked = self._masked_or_same(value)
                if masked is not _SAME:
                    out = {**out, field: masked}
        return out

    def _clean_content(self, content_type: Any, content: Any) -> Any:
        if content_type not in _TEXT_CONTENT_TYPES:
            return _SAME
        if isinstance(content, dict):
            inner = self._clean_inner(content)
            return _SAME if inner is content else inner
        if not isinstance(content, str):
            return _SAME
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            # Not the JSON a text message should carry: whatever stores it stores the raw
            # string, so that is what gets masked.
            return self._masked_or_same(content)
        if not isinstance(parsed, dict):
            return self._masked_or_same(content)
        inner = self._clean_inner(parsed)
        return _SAME if inner is parsed else orjson.dumps(inner).decode()

    def _clean_inner(self, inner: dict[str, Any]) -> dict[str, Any]:
        out = inner
        for key in _TEXT_CONTENT_KEYS:
            value = inner.get(key)
            if isinstance(value, str):
                masked = self._masked_or_same(value)
                if masked is not _SAME:
                    out = {**out, key: masked}
        return out

    def _masked_or_same(self, text: str) -> Any:
        masked, found = self._pattern.subn(_stars, text)
        return masked if found else _SAME


def _stars(match: re.Match[str]) -> str:
    return "*" * len(match.group())


class _Same:
    """Marks a field that holds no forbidden word (None could be a field's value)."""

    __slots__ = ()


_SAME: Any = _Same()
