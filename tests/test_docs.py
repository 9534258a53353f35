"""Docs that are derived from code stay equal to it."""

from __future__ import annotations

from pathlib import Path

from hub.bus.reference import render

ROOT = Path(__file__).resolve().parent.parent


def test_hooks_doc_matches_catalogue() -> None:
    text = (ROOT / "docs" / "hooks.md").read_text()
    section = text.split("<!-- catalogue:start -->\n", 1)[1].split("<!-- catalogue:end -->", 1)[0]
    assert section == render(), "run: python -m hub.bus.reference --write docs/hooks.md"
