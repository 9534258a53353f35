"""Where hub/db/sqlite.py runs a COMMIT: in the loop when hurried and commits are quick."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from hub.db.engine import create_engine
from hub.db.sqlite import _CommitPlace

SLOW, QUICK = 0.005, 0.0002


def test_commits_stay_in_the_loop_while_quick_and_a_stray_slow_one_does_not_decide() -> None:
    place = _CommitPlace()
    place.took(0.050)  # the first commit of a new file, or a checkpoint
    for _ in range(20):
        assert place.inline()
        place.took(QUICK)
    assert place.in_loop


def test_slow_commits_move_to_the_thread_and_a_quick_probe_brings_them_back() -> None:
    place = _CommitPlace(probe_every=4)
    for _ in range(9):
        place.took(SLOW)
    assert not place.in_loop
    # Only every 4th commit runs in the loop, as a probe.
    assert [place.inline() for _ in range(8)] == [False, False, False, True] * 2
    place.took(SLOW)  # a slow probe: they stay in the thread
    assert not place.in_loop
    place.took(QUICK)
    assert place.in_loop and place.inline()


def test_other_commits_run_in_the_loop_only_while_commits_are_instant() -> None:
    place = _CommitPlace(probe_every=4)
    # Nothing known yet: in the thread, but every 4th runs in the loop to learn.
    assert [place.inline(hurry=False) for _ in range(4)] == [False, False, False, True]
    for _ in range(3):
        place.took(0.00005)  # no fsync to speak of (tmpfs, or a disk that lies)
    assert place.inline(hurry=False)
    for _ in range(6):
        place.took(0.0008)  # a real fsync, quick enough for hurried commits only
    assert place.in_loop and place.inline(hurry=True)
    assert not place.inline(hurry=False)


async def test_only_a_hurried_commit_runs_in_the_loop(tmp_path: Path) -> None:
    # A commit run in the loop is timed by its _CommitPlace; one in the thread is not.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
        timed = []
        for v, hurry in enumerate((False, True, False)):
            async with engine.begin() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                driver.hurry = hurry
                await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": v})
            timed.append(len(driver._place._recent))
            assert driver.hurry is False  # a hint for one commit only
        assert timed == [0, 1, 1]
        async with engine.connect() as conn:
            assert list((await conn.execute(text("SELECT v FROM t"))).scalars()) == [0, 1, 2]
    finally:
        await engine.dispose()
