"""How a long-lived node process runs: its event loop and its garbage collector.

`imhub serve` and `imhub worker` run their main coroutine through `run_node`; so do the
benchmarks that time a node's parts in-process, so that they measure what a node runs.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

# Collections of the youngest generation every this many net allocations (CPython: 700).
_GC_GEN0 = 50_000


def tune_gc() -> None:
    """Freeze what is loaded so far and collect the young generation less often.

    A busy node allocates a few dozen objects per message, almost none of them in
    cycles. With CPython's defaults it ran a young collection every few messages and,
    every few seconds, a full one that walked every module, class and function loaded:
    about a tenth of its CPU. Frozen objects are never scanned again; the young
    generation is collected after 50,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(_GC_GEN0, gen1, gen2)


def run_node(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` with the GC tuned, on uvloop when it is installed (as `uvicorn` itself
    would choose): its loop and transports cost a fraction of asyncio's per wake-up and
    per socket write, which is most of a busy node's overhead."""
    tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
