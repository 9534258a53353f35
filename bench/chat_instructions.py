"""Chat's server work counted in CPU instructions (valgrind's callgrind), next to a bare
WebSocket echo server's per frame: a figure that does not move with the machine.

    .venv/bin/python bench/chat_instructions.py [--messages 3000] [--pairs 50] [--window 4]

bench/chat_throughput.py's flood (N senders, each with `window` SendMsg frames in flight,
to N receivers) against `imhub serve` run under `valgrind --tool=callgrind`, on SQLite;
the same client against the bare echo server of that benchmark, also under callgrind.
After a warm-up, callgrind's counters are zeroed (`callgrind_control --zero`), the
measured messages are sent, and the counters dumped: instructions of the server process
(all threads, user space: the kernel's share, system calls and the disk, is not
counted) per acknowledged message, and per echoed frame for the echo.

Two runs of the same code agree within about half a percent, on a busy machine too, so
an A/B of a change to the send path takes one run of each, where the throughput
benchmark needs several alternating pairs to rise above the machine's noise. It does not
see what instructions do not show: waits (the COMMIT's fsync, the event loop's idle
turns), the kernel's work, cache misses. Under callgrind the server runs ~50x slower, so
its batches are larger than in a real run: compare builds with this, and confirm with
bench/chat_throughput.py.

Needs valgrind (`callgrind_control` included); Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baseline import run_uvicorn_process
from _server import run_imhub
from chat_throughput import _frame, _imhub_pairs, _Pair

_STARTUP = 300.0  # seconds a server under callgrind may take to listen


def _callgrind(out: Path) -> list[str]:
    return ["valgrind", "--quiet", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p",
            "--collect-systime=no"]


async def _control(pid: int, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "callgrind_control", *args, str(pid), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)} failed")


async def _flood(pairs: list[_Pair], window: int, count: int,
                 make: Callable[[_Pair], Callable[[str], str]]) -> int:
    """Send until `count` more frames are answered; how many were."""
    first = sum(p.acked for p in pairs)
    floods = [asyncio.create_task(p.flood(window, time.perf_counter() + 3600, make(p)))
              for p in pairs]
    # Polled: the count is kept by the pairs' readers, shared with chat_throughput.py.
    while sum(p.acked for p in pairs) < first + count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for task in floods:
        task.cancel()
    await asyncio.sleep(1.0)  # the answers to what was in flight
    return sum(p.acked for p in pairs) - first


def _instructions(out: Path, label: str) -> int:
    """Instructions counted in the part dumped as `label` (dumps of this run only: each
    run writes to a directory of its own)."""
    for dump in out.glob("cg.*"):
        text = dump.read_text(errors="replace")
        if f"desc: Trigger: dump {label}\n" not in text:
            continue
        for line in text.splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no callgrind dump named {label} in {out}")


async def _measure(pairs: list[_Pair], pid: int, args: argparse.Namespace, out: Path,
                   label: str) -> float:
    """Instructions of the server (process `pid`, under callgrind) per frame answered,
    over `args.messages` frames."""
    def make(p: _Pair) -> Callable[[str], str]:
        return lambda cid: _frame(p.name, p.receiver, cid)

    readers = [asyncio.create_task(p.read_acks(False)) for p in pairs]
    readers += [asyncio.create_task(p.read_pushes(False)) for p in pairs if p.rx is not None]
    await _flood(pairs, args.window, args.warmup, make)
    await _control(pid, "--zero")
    answered = await _flood(pairs, args.window, args.messages, make)
    await _control(pid, f"--dump={label}")
    await asyncio.sleep(1.0)
    for task in readers:
        task.cancel()
    if sum(p.errors for p in pairs):
        raise RuntimeError("sends were refused")
    return _instructions(out, label) / answered


async def _echo(port: int, pid: int, args: argparse.Namespace, out: Path) -> float:
    pairs = [_Pair(f"s{i}", await connect(f"ws://127.0.0.1:{port}/ws", max_size=None,
                                          compression=None, ping_interval=None),
                   None, f"r{i}") for i in range(args.pairs)]
    try:
        return await _measure(pairs, pid, args, out, "echo")
    finally:
        for p in pairs:
            await p.tx.close()


async def _imhub(hub: Any, args: argparse.Namespace, out: Path) -> float:
    pairs = await _imhub_pairs(hub, args.pairs)
    try:
        return await _measure(pairs, hub.pid, args, out, "chat")
    finally:
        for p in pairs:
            await p.tx.close()
            if p.rx is not None:
                await p.rx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1500)
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--window", type=int, default=4)
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="imhub-cg-") as tmp:
        out = Path(tmp)
        with run_uvicorn_process("chat_throughput:echo_app", wrapper=_callgrind(out),
                                 wait=_STARTUP) as echo_server:
            echo = asyncio.run(_echo(echo_server.port, echo_server.pid, args, out))
        with run_imhub({}, wrapper=_callgrind(out), wait=_STARTUP) as hub:
            chat = asyncio.run(_imhub(hub, args, out))
    print(f"pairs={args.pairs} window={args.window} messages={args.messages} "
          f"(under callgrind; user-space instructions of the server process)")
    print(f"imhub chat:   {chat:10,.0f} instructions a message (stored, seq'd, "
          f"afterSendSingleMsg; SQLite)")
    print(f"bare WS echo: {echo:10,.0f} instructions a frame (baseline)")
    print(f"ratio:        {chat / echo:10.2f}x the echo's work")


if __name__ == "__main__":
    main()
