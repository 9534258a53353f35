"""A plugin's bad config stops `imhub serve`: exit status 2 and one line naming the
plugin and the key (CONTRACT 1 and 6). Run as the real command, in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import yaml

from tests.conftest import free_port

IMHUB = str(Path(sys.executable).with_name("imhub"))


def _config(tmp: Path, module: str, config: dict[str, object]) -> tuple[Path, Path]:
    db, conf = tmp / "imhub.db", tmp / "hub.yml"
    conf.write_text(yaml.safe_dump({
        "database": {"url": f"sqlite+aiosqlite:///{db}"},
        "plugins": [{"module": module, "priority": 10, "config": config}],
    }))
    return conf, db


async def _serve(conf: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    proc = await asyncio.create_subprocess_exec(
        IMHUB, "serve", "--config", str(conf), "--port", str(free_port()),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=conf.parent)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:  # it started serving: the test fails, then stops it
            proc.kill()
            await proc.wait()
    return int(proc.returncode or 0), err.decode()


async def test_serve_refuses_a_bad_plugin_config(tmp_path: Path) -> None:
    # One case: which plugin and key each bad value names is tested in-process (it is
    # build_plugin's message); this is about the command: status, one line, nothing written.
    module = "plugins.word_filter:WordFilter"
    conf, db = _config(tmp_path, module, {"words": [], "action": "mask"})
    status, stderr = await _serve(conf)
    assert status == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert f"plugin '{module}' config key 'words'" in stderr
    assert stderr.startswith("imhub: error: ")
    assert not db.exists(), "nothing written"
