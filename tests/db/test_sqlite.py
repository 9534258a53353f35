"""Where hub/db/sqlite.py runs a COMMIT: in the loop while commits are quick."""

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


async def test_a_connection_commits_in_the_loop_and_in_the_thread(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
        for slow in (False, True):
            async with engine.begin() as conn:
                place = (await conn.get_raw_connection()).driver_connection._place
                if slow:
                    for _ in range(9):
                        place.took(SLOW)
                assert place.in_loop is not slow
                await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": int(slow)})
        async with engine.connect() as conn:
            assert list((await conn.execute(text("SELECT v FROM t"))).scalars()) == [0, 1]
    finally:
        await engine.dispose()
