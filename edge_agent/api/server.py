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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import structlog
import uvicorn

from edge_agent.api.middleware import ASGIApp, BearerToken
from edge_agent.config import ApiSection
from edge_agent.errors import ConfigError, EdgeAgentError
from sync.files import private_dir
from sync.http_limits import MAX_CONNECTIONS, HeadDeadlineProtocol

log = structlog.get_logger("edge_agent.api.server")

GRACE_S: Final = 2.0
TICK_S: Final = 1.0
"""How often the idle server wakes (its Date header has a one-second resolution)."""


class ApiServerError(EdgeAgentError):
    """The API could not listen (socket in use, bad group, port taken)."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the daemon owns SIGTERM/SIGINT), with an event
    for "listening" instead of a ``started`` flag to poll, and without its 0.1 s tick:
    uvicorn's main loop wakes ten times a second to refresh its Date header and to look at
    ``should_exit``; this one wakes once a second for the header, and at once when
    ``should_exit`` is set (an event, not a polled flag)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()  # before uvicorn's __init__ sets should_exit
        super().__init__(config)
        self.listening = asyncio.Event()
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

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


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
    private_dir(path.parent)
    _remove_stale(path)
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"api.socket_group: no such group {group!r}") from None
    def bind(sock: socket.socket) -> None:
        sock.bind(str(path))
        os.chmod(path, int(mode, 8))
        if gid != -1:
            os.chown(path, -1, gid)

    return _listening(socket.AF_UNIX, bind, str(path))


def tcp_socket(host: str, port: int) -> socket.socket:
    def bind(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))

    return _listening(socket.AF_INET6 if ":" in host else socket.AF_INET, bind,
                      f"{host}:{port}")


def _listening(family: int, bind: Callable[[socket.socket], None], where: str
               ) -> socket.socket:
    """A non-blocking listening socket, closed again if any step fails."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        bind(sock)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiServerError(f"cannot listen on {where}: {exc}") from exc
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
    """Serve ``app`` until cancelled; ``ready`` is set once every listener accepts.

    One task per listener in a TaskGroup: a listener that fails or stops cancels the
    others and raises here (its own error, or :class:`ApiServerError`). On cancellation
    every server is asked to exit and given ``GRACE_S`` to finish its requests."""
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
    servers = [server for _, server, _ in listeners]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_listen(server, sock), name=f"api.{name}")
                     for name, server, sock in listeners]
            try:
                for server in servers:
                    await server.listening.wait()
                log.info("api.listening", socket=str(api.socket),
                         tcp=f"{api.tcp.host}:{api.tcp.port}" if api.tcp else None)
                if ready is not None:
                    ready.set()
                await asyncio.get_running_loop().create_future()  # until cancelled
            finally:
                for server in servers:
                    server.should_exit = True
                # graceful first (leaving the group cancels the servers at once); a
                # second cancellation cuts the grace short
                await asyncio.wait(tasks, timeout=GRACE_S + 1.0)
    except BaseExceptionGroup as failed:
        error = failed.exceptions[0]  # the listener's own error, its cause kept
        raise error from error.__cause__
    finally:
        # a listener cancelled by a failing sibling never reached uvicorn's own close
        for _, _, sock in listeners:
            sock.close()
        with contextlib.suppress(OSError):
            if api.socket.is_socket():
                api.socket.unlink()


async def _listen(server: _Server, sock: socket.socket) -> None:
    """One listener; returning on its own (not asked to exit) is an error."""
    await server.serve(sockets=[sock])
    if not server.should_exit:
        raise ApiServerError("the API server stopped during startup" if not server.started
                             else "the API server stopped unexpectedly")
