"""The command line, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

IMHUB = str(Path(sys.executable).parent / "imhub")


def _run(*args: str, db: Path, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMHUB_DATABASE_URL": f"sqlite+aiosqlite:///{db}", **(env or {})}
    return subprocess.run([IMHUB, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=60)


def test_tenant_create_and_list(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    out = _run("tenant", "create", "acme", "--json", db=db, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["tenantID"] and created["adminToken"].startswith("adm.")
    listed = _run("tenant", "list", "--json", db=db, cwd=tmp_path)
    assert [t["tenantID"] for t in json.loads(listed.stdout)] == [created["tenantID"]]
    dup = _run("tenant", "create", "acme", db=db, cwd=tmp_path)
    assert dup.returncode == 2 and "already exists" in dup.stderr


@pytest.mark.parametrize("args", [
    ("serve", "--bogus"),
    ("serve", "--port", "99999"),
    ("serve", "--host", "999.1.1.1", "--port", "0"),  # not an address: before any write
    ("tenant", "create"),
    ("no-such-command",),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = _run(*args, db=tmp_path / "hub.db", cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "hub.db").exists()


@pytest.mark.parametrize(("text", "key"), [
    ("server:\n  port: abc\n", "server.port"),
    ("server:\n  prot: 1\n", "server.prot"),
    ("plugins:\n  - module: plugins.nope:Nothing\n", "plugins.nope"),
    ("database: [1, 2\n", "YAML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "hub.yml"
    cfg.write_text(text)
    out = _run("serve", "--config", str(cfg), db=tmp_path / "hub.db", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert key in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "hub.db").exists()


_BOOM = """
from hub.plugin import Plugin


class Boom(Plugin):
    def __init__(self, config):
        raise RuntimeError("no licence key")
"""


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("tenant", "list")])
@pytest.mark.parametrize(("text", "env", "words"), [
    ("", {"IMHUB_DATABASE_URL": "mysql://x/y"}, "database.url"),
    ("", {"IMHUB_REDIS_URL": "localhost:6379"}, "redis_url"),
    ("redis_url: notaurl\n", {}, "redis_url"),
    ("webhooks:\n  allowNetworks: [notacidr]\n", {}, "webhooks.allowNetworks"),
    ("plugins:\n  - module: plugins.word_filter:WordFilter\n    config: {bogus: 1}\n", {},
     "plugins.word_filter:WordFilter"),
    ("plugins:\n  - module: boom:Boom\n", {}, "no licence key"),  # its __init__ raises
])
def test_bad_config_is_refused_by_every_command(tmp_path: Path, command: tuple[str, ...],
                                                text: str, env: dict[str, str], words: str
                                                ) -> None:
    """A config that `serve` refuses, `tenant list` refuses too (it never starts the
    plugins, but the file is as bad), and neither writes the database first."""
    (tmp_path / "boom.py").write_text(_BOOM)
    cfg = tmp_path / "hub.yml"
    cfg.write_text(text)
    out = _run(*command, "--config", str(cfg), db=tmp_path / "hub.db", cwd=tmp_path,
               env={"PYTHONPATH": str(tmp_path), **env})
    assert out.returncode == 2, out.stderr
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "hub.db").exists()


def test_every_command_has_help(tmp_path: Path) -> None:
    for args in (("--help",), ("serve", "--help"), ("tenant", "--help"),
                 ("tenant", "create", "--help"), ("tenant", "list", "--help"),
                 ("migrate", "--help"), ("demo", "--help")):
        out = _run(*args, db=tmp_path / "hub.db", cwd=tmp_path)
        assert out.returncode == 0 and "Usage" in out.stdout, args
