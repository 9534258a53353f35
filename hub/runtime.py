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
# The pause grows with it: a batch's SQLAlchemy session leaves ~45 objects in reference
# cycles, and at 50,000 each young collection held the loop 15-25 ms.
_GC_GEN0 = 3_000


def tune_gc() -> None:
    """Freeze what is loaded so far and collect the young generation a little less often.

    With CPython's defaults a busy node ran, every few seconds, a full collection that
    walked every module, class and function loaded: about a tenth of its CPU. Frozen
    objects are never scanned again. The young generation is collected after 3,000
    allocations instead of 700; not much later, because what a collection costs, and
    how long it holds the loop, grows with the young generation's size: at 50,000 a
    collection took 15-25 ms and set chat's p99 latency (docs/performance.md), with no
    throughput to show for it.
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
