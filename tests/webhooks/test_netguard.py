"""The SSRF guard: vetting only (nothing here connects outside the machine)."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import httpx
import pytest

from hub.webhooks.netguard import BlockedAddress, NetGuard
from hub.webhooks.transport import FastTransport
from tests.webhooks.test_transport import echo_app, serve_uvicorn

BLOCKED_URLS = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.1:8080/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://100.64.0.1/", "shared (CGNAT)"),
    ("http://224.0.0.251/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00::1]/", "private"),
    ("https://[2002:7f00:1::]/", "loopback"),
    ("https://[64:ff9b::a00:1]/", "private"),
    ("http://240.0.0.1/", "reserved"),
]


@pytest.mark.parametrize(("url", "reason"), BLOCKED_URLS)
def test_blocked_literals(url: str, reason: str) -> None:
    with pytest.raises(BlockedAddress) as caught:
        NetGuard().check_url(url)
    assert caught.value.reason == reason
    assert caught.value.address in str(caught.value)
    assert repr(caught.value.host) in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",
        "https://93.184.216.34:8443/hook?x=1",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        "https://hooks.example.com/imhub",  # a name: vetted at resolve time
        "http://localhost:8080/hook",  # likewise, even this one
    ],
)
def test_public_literals_and_names_pass(url: str) -> None:
    NetGuard().check_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://93.184.216.34/", "scheme"),
        ("93.184.216.34/hook", "scheme"),
        ("http:///hook", "no host"),
        ("https://user:pw@93.184.216.34/", "credentials"),
        ("https://token@93.184.216.34/", "credentials"),
        ("https://93.184.216.34:99999/", "port"),
        ("https://93.184.216.34/a b", "whitespace"),
        ("https://93.184.216.34/\r\nX: y", "whitespace"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetGuard().check_url(url)


def test_allow_networks() -> None:
    guard = NetGuard(allow_networks=["127.0.0.0/8", "10.20.0.0/16"])
    guard.check_url("http://127.0.0.1:8080/hook")
    guard.check_url("http://[::ffff:127.0.0.1]/hook")
    guard.check_url("http://10.20.1.1/hook")
    with pytest.raises(BlockedAddress):
        guard.check_url("http://10.21.0.1/hook")
    with pytest.raises(BlockedAddress):
        guard.check_url("http://[::1]/hook")


def test_invalid_allow_network_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        NetGuard(allow_networks=["192.168.0.0/16", "10.0.0.0/33"])


@pytest.mark.asyncio
async def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    with pytest.raises(BlockedAddress, match="'localhost'"):
        await NetGuard().resolve("localhost", 80)
    with pytest.raises(BlockedAddress):
        await NetGuard().check_url_resolving("http://localhost:8080/hook")
    allowed = NetGuard(allow_networks=["127.0.0.0/8", "::1/128"])
    addresses = await allowed.check_url_resolving("http://localhost:8080/hook")
    assert "127.0.0.1" in addresses or "::1" in addresses


def _fake_getaddrinfo(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)


@pytest.mark.asyncio
async def test_one_blocked_record_refuses_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_getaddrinfo(monkeypatch, "93.184.216.34", "10.0.0.5")
    with pytest.raises(BlockedAddress, match=re.escape("10.0.0.5")):
        await NetGuard().resolve("rebind.example.com", 443)


@pytest.mark.asyncio
async def test_public_records_are_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_getaddrinfo(monkeypatch, "93.184.216.34", "93.184.216.34", "2606:2800:220:1::1")
    addresses = await NetGuard().resolve("hooks.example.com", 443)
    assert addresses == ["93.184.216.34", "2606:2800:220:1::1"]


@pytest.mark.asyncio
async def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_getaddrinfo(monkeypatch)
    with pytest.raises(ValueError, match=re.escape("cannot resolve host 'nowhere.example'")):
        await NetGuard().check_url_resolving("https://nowhere.example/hook")


@pytest.mark.asyncio
async def test_transport_guard_refuses_then_allows_localhost() -> None:
    app = echo_app()
    async with serve_uvicorn(app) as port:
        url = f"http://localhost:{port}/echo"
        guarded = FastTransport(connect_guard=NetGuard().resolve)
        async with httpx.AsyncClient(transport=guarded) as client:
            with pytest.raises(httpx.ConnectError, match="loopback") as caught:
                await client.post(url, content=b"x")
        assert isinstance(caught.value.__cause__, BlockedAddress)
        assert app.state.peers == set()  # refused before connecting

        guard = NetGuard(allow_networks=["127.0.0.0/8", "::1/128"])
        allowed = FastTransport(connect_guard=guard.resolve)
        async with httpx.AsyncClient(transport=allowed) as client:
            response = await client.post(url, content=b"hello", headers={"x-id": "1"})
        assert response.status_code == 200
        assert response.json()["body"] == "hello"
        assert response.json()["host"] == f"localhost:{port}"
