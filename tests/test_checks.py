"""The send-check cache: kept values, the generation guard, bounds."""

from __future__ import annotations

from hub.checks import SendChecks


def test_a_value_is_kept_until_a_change() -> None:
    checks = SendChecks(enabled=True)
    checks.keep("k", checks.generation, ("nick", True))
    assert checks.lookup("k") == ("nick", True)
    checks.changed()
    assert checks.lookup("k") is None


def test_a_read_that_raced_a_change_is_not_kept() -> None:
    checks = SendChecks(enabled=True)
    before = checks.generation
    checks.changed()  # a write committed while the read was under way
    checks.keep("k", before, "stale")
    assert checks.lookup("k") is None
    checks.keep("k", checks.generation, "fresh")
    assert checks.lookup("k") == "fresh"


def test_disabled_keeps_nothing() -> None:
    checks = SendChecks(enabled=False)
    checks.keep("k", checks.generation, "v")
    assert checks.lookup("k") is None


def test_the_cache_and_the_resent_keys_stay_bounded() -> None:
    checks = SendChecks(enabled=True, limit=10)
    for i in range(25):
        checks.keep(i, checks.generation, i)
        checks.resent.add(i)
    assert sum(checks.lookup(i) is not None for i in range(25)) <= 10
    assert 24 in checks.resent and 0 not in checks.resent
    assert sum(i in checks.resent for i in range(25)) <= 10
    checks.changed()
    assert 24 in checks.resent  # a change clears the cache, not the resent keys


def test_a_big_group_counts_by_its_members() -> None:
    checks = SendChecks(enabled=True, limit=100)
    checks.keep("small", checks.generation, "s", weight=10)
    checks.keep("big", checks.generation, "b", weight=95)  # past the limit: a fresh start
    assert checks.lookup("small") is None and checks.lookup("big") == "b"
    checks.keep("huge", checks.generation, "h", weight=101)  # never kept
    assert checks.lookup("huge") is None and checks.lookup("big") == "b"
