"""Running the API: uvicorn on the Unix socket, and optionally on loopback TCP behind a
bearer token, both serving the same app, inside the daemon's event loop.

The daemon owns signals: uvicorn's handlers are disabled and the servers stop when the
task running :func:`serve_api` is cancelled (graceful for a short while, then forced).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import structlog
import uvicorn

from edge_agent.api.middleware import ASGIApp, BearerToken
from edge_agent.config import ApiSection
from edge_agent.errors import ConfigError, EdgeAgentError
from sync.http_limits import MAX_CONNECTIONS, HeadDeadlineProtocol

log = structlog.get_logger("edge_agent.api.server")

GRACE_S: Final = 2.0
TICK_S: Final = 1.0
"""How often the idle server wakes (its Date header has a one-second resolution)."""


class ApiServerError(EdgeAgentError):
    """The API could not listen (socket in use, bad group, port taken)."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the daemon owns SIGTERM/SIGINT), and without
    its 0.1 s tick: uvicorn's main loop wakes ten times a second to refresh its Date header
    and to look at ``should_exit``; this one wakes once a second for the header, and at
    once when ``should_exit`` is set (an event, not a polled flag)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()  # before uvicorn's __init__ sets should_exit
        super().__init__(config)

    @property  # uvicorn declares a plain attribute; this one is an event
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # tick 0: uvicorn refreshes its Date header
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), TICK_S)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ApiServerError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: left by a process that died
        return
    except OSError as exc:
        raise ApiServerError(f"cannot probe {path}: {exc}") from exc
    finally:
        probe.close()
    raise ApiServerError(f"{path} is in use by a running process (is another edge-agent "
                         "running?)")


def unix_socket(path: Path, mode: str, group: str | None) -> socket.socket:
    """Bind the API socket: stale file removed first, then mode and group applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"api.socket_group: no such group {group!r}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, int(mode, 8))
        if gid != -1:
            os.chown(path, -1, gid)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiServerError(f"cannot listen on {path}: {exc}") from exc
    return sock


def tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiServerError(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


def _server(app: ASGIApp) -> _Server:
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, server_header=False,
        timeout_graceful_shutdown=int(GRACE_S), timeout_keep_alive=30,
        # a request head must arrive within HEAD_TIMEOUT_S; at most MAX_CONNECTIONS at
        # once (then 503); no proxy in front of the agent: forwarded headers are ignored
        http=HeadDeadlineProtocol, limit_concurrency=MAX_CONNECTIONS, proxy_headers=False,
    )
    return _Server(config)


def _token(api: ApiSection) -> str:
    if api.tcp is None or api.tcp.token is None:  # the config model refuses this already
        raise ConfigError("api.tcp needs a bearer token; never serve TCP without one")
    return api.tcp.token.get_secret_value()


async def serve_api(app: Any, api: ApiSection, *, ready: asyncio.Event | None = None) -> None:
    """Serve ``app`` until cancelled; ``ready`` is set once every listener accepts."""
    listeners: list[tuple[str, _Server, socket.socket]] = []
    try:
        listeners.append(("unix", _server(app), unix_socket(api.socket, api.socket_mode,
                                                            api.socket_group)))
        if api.tcp is not None:
            host = "127.0.0.1" if api.tcp.host == "localhost" else api.tcp.host
            guarded = BearerToken(app, _token(api))
            listeners.append(("tcp", _server(guarded), tcp_socket(host, api.tcp.port)))
    except BaseException:
        for _, _, sock in listeners:
            sock.close()
        raise
    tasks = [asyncio.create_task(server.serve(sockets=[sock]), name=f"api.{name}")
             for name, server, sock in listeners]
    servers = [server for _, server, _ in listeners]
    try:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        failed = [t for t in tasks if t.done()]
        if failed:
            await failed[0]  # raises the listener's error
            raise ApiServerError("the API server stopped during startup")
        log.info("api.listening", socket=str(api.socket),
                 tcp=f"{api.tcp.host}:{api.tcp.port}" if api.tcp else None)
        if ready is not None:
            ready.set()
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            await task
        raise ApiServerError("the API server stopped unexpectedly")
    finally:
        for server in servers:
            server.should_exit = True
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, still = await asyncio.shield(asyncio.wait(pending, timeout=GRACE_S + 1.0))
            for task in still:
                task.cancel()
            for task in still:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(OSError):
            if api.socket.is_socket():
                api.socket.unlink()
