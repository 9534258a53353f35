"""`imhub` subprocesses for tests that kill a node with SIGKILL or run the CLI."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx

IMHUB = [sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())"]


def run_cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMHUB, *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=60, check=True)


class Process:
    """An imhub subprocess that a test kills with SIGKILL or stops politely."""

    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Serve(Process):
    """`imhub serve` in a subprocess."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self._cmd = [*IMHUB, "serve", "--config", str(config)]
        self.base = f"http://127.0.0.1:{port}"
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self._log.open("ab") as log:
            return subprocess.Popen(self._cmd, stdout=log, stderr=log)

    async def start(self) -> None:
        self.proc = self._spawn()
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise AssertionError(f"imhub serve exited: {self._log.read_text()}")
                try:
                    if (await http.get(self.base + "/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("imhub serve did not come up")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
