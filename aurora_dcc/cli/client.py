"""The ``aurora-dcc`` commands that talk to a running host: call, ping, handlers, listen, hosts.

Each opens one connection (:func:`open_client`), does its work and maps
every failure to a :class:`~.exit_codes.CliError` with its exit code, so
the user sees one line, never a traceback.

Usage::

    client, connect_s = open_client("maya", token=None, timeout=10.0)
    print_json(call(client, "scene.info", {}))
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Optional

from ..errors import (
    ChannelTimeout,
    Disconnected,
    ErrorCode,
    IpcChannelError,
    ShuttingDown,
)
from ..process.discovery import HostRecord, list_hosts
from ..process.environment import ENV_CHANNEL
from ..process.host_client import HostClient, resolve_host
from ..rpc.call_error import IpcCallError
from ..transport.address import InvalidChannelName
from ..transport.local_socket import LocalSocketChannel
from .buffer_output import buffer_summary
from .exit_codes import CliError, ExitCode

__all__ = [
    "SLOW_HANDSHAKE",
    "call",
    "handler_names",
    "hosts_table",
    "listen",
    "open_client",
    "parse_params",
    "ping",
    "print_json",
]

SLOW_HANDSHAKE = 0.25
"""Seconds: a handshake slower than this is reported (a Qt host answers on its main thread)."""


def print_json(value: Any) -> None:
    # A buffer (an event's, a result's) is printed as its summary: JSON cannot hold it.
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=buffer_summary) + "\n")
    sys.stdout.flush()


# -- params ---------------------------------------------------------------------


def parse_params(items: list[str], stdin: Any = None) -> Any:
    """``call``'s parameters: one JSON text, ``-`` (JSON on stdin), or ``key=value`` pairs.

    In a pair the value is JSON when it parses (``count=3``, ``flag=true``,
    ``nodes='["a"]'``), else the plain string (``type=cube``). No
    parameters at all is ``{}``.
    """
    if not items:
        return {}
    if items == ["-"]:
        text = (stdin if stdin is not None else sys.stdin).read()
        return _json(text, "stdin")
    pairs = [item for item in items if "=" in item and not item.lstrip().startswith(("{", "["))]
    if not pairs:
        if len(items) > 1:
            raise CliError(
                ExitCode.USAGE,
                "give the params as one JSON text, '-' for stdin, or key=value pairs",
            )
        return _json(items[0], "params")
    if len(pairs) != len(items):
        others = [item for item in items if item not in pairs]
        raise CliError(
            ExitCode.USAGE,
            f"cannot mix key=value pairs with {others[0]!r}; use pairs only, or one JSON text",
        )
    params: dict[str, Any] = {}
    for item in pairs:
        key, _, raw = item.partition("=")
        if not key:
            raise CliError(ExitCode.USAGE, f"{item!r}: a key=value pair needs a key")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(ExitCode.USAGE, f"{where} are not valid JSON: {exc}") from None


# -- connecting -----------------------------------------------------------------


def open_client(
    target: Optional[str], *, token: Optional[str], timeout: float
) -> tuple[HostClient, float]:
    """A client of the host ``target`` names, and the seconds the connection took."""
    try:
        found = resolve_host(target, token=token)
    except InvalidChannelName as exc:
        raise CliError(ExitCode.USAGE, str(exc)) from None
    except IpcChannelError as exc:  # HostNotFound, AmbiguousHost, a bad token file
        raise CliError(ExitCode.CONNECT_FAILED, str(exc)) from None
    channel_name = found.channel
    started = time.perf_counter()
    try:
        channel = LocalSocketChannel.connect(channel_name, token=found.token, timeout=timeout)
    except InvalidChannelName as exc:
        raise CliError(ExitCode.USAGE, str(exc)) from None
    except ChannelTimeout:
        raise CliError(
            ExitCode.TIMEOUT,
            f"the host of {channel_name!r} did not answer within {timeout:g} s: its main "
            "thread is busy or frozen (a Qt host answers connections on its main thread)",
        ) from None
    except Disconnected:
        named_by = f", named by {found.via}" if found.via == ENV_CHANNEL else ""
        raise CliError(
            ExitCode.CONNECT_FAILED,
            f"no host serves channel {channel_name!r}{named_by} "
            "(aurora-dcc hosts lists the running ones)",
        ) from None
    except (IpcChannelError, OSError) as exc:
        raise CliError(
            ExitCode.CONNECT_FAILED, f"cannot connect to {channel_name!r}: {exc}"
        ) from None
    connect_s = time.perf_counter() - started
    return HostClient(channel, found.record, timeout=timeout), connect_s


def _failure(exc: Exception, what: str) -> CliError:
    """``exc``, raised while ``what`` ran on a connected client, as a CliError."""
    if isinstance(exc, IpcCallError):
        if exc.code == ErrorCode.SHUTTING_DOWN:  # we did not close: the host went away
            return CliError(
                ExitCode.CONNECTION_LOST, f"{what}: connection lost (the host went away)"
            )
        if exc.code == ErrorCode.TIMEOUT:
            return CliError(ExitCode.TIMEOUT, f"{what}: {exc.message}")
        detail = None
        data = exc.data
        if isinstance(data, dict) and isinstance(data.get("traceback"), str):
            detail = "remote traceback (from the host):\n" + data["traceback"].rstrip()
        return CliError(
            ExitCode.CALL_FAILED, f"{what} failed ({exc.code}): {exc.message}", detail=detail
        )
    if isinstance(exc, (Disconnected, ShuttingDown)):
        return CliError(ExitCode.CONNECTION_LOST, f"{what}: connection lost ({exc})")
    return CliError(ExitCode.CALL_FAILED, f"{what} failed: {exc}")


# -- the commands -----------------------------------------------------------------


def call(client: HostClient, method: str, params: Any) -> Any:
    """``method``'s result; a CliError with the right exit code otherwise."""
    try:
        return client.request(method, params)
    except IpcChannelError as exc:
        raise _failure(exc, method) from None


def ping(client: HostClient, connect_s: float) -> dict[str, Any]:
    """Connect time and protocol round trip, in milliseconds, and a note if the host was slow."""
    try:
        round_trip = client.ping()
    except IpcChannelError as exc:
        raise _failure(exc, "ping") from None
    result: dict[str, Any] = {
        "channel": client.channel.name,
        "connect_ms": round(connect_s * 1000.0, 3),
        "round_trip_ms": round(round_trip * 1000.0, 3),
    }
    if max(connect_s, round_trip) > SLOW_HANDSHAKE:
        sys.stderr.write(
            f"aurora-dcc: the host took {connect_s:.3f} s to accept the connection and "
            f"{round_trip:.3f} s to answer the ping: its main thread did not answer in time "
            f"(over {SLOW_HANDSHAKE:g} s; busy or frozen)\n"
        )
    return result


def handler_names(client: HostClient) -> list[str]:
    return sorted(client.remote_handler_names)


def listen(client: HostClient, pattern: str, count: int) -> None:
    """Print events matching ``pattern`` until ``count`` (0: forever) or the host goes away."""
    done = threading.Event()
    seen = 0
    reader_left = False

    def show(event: str, data: Any) -> None:
        nonlocal seen, reader_left
        try:
            print_json({"event": event, "data": data})
        except BrokenPipeError:  # `listen | head -3`: the reader has what it wanted
            reader_left = True
            done.set()
            return
        seen += 1
        if count and seen >= count:
            done.set()

    client.on(pattern, show)
    client.channel.shutdown_state.on_shutdown(done.set)
    while not done.wait(0.2):  # a short wait keeps Ctrl-C responsive
        pass
    if reader_left:
        raise BrokenPipeError("stdout was closed")
    if not (count and seen >= count):
        raise CliError(
            ExitCode.CONNECTION_LOST,
            f"listen: connection lost (the host went away after {seen} event(s))",
        )


# -- hosts ------------------------------------------------------------------------


def hosts_table(records: Optional[list[HostRecord]] = None) -> str:
    """The running hosts as an aligned text table (one line per host, newest last)."""
    if records is None:
        records = list_hosts()
    now = time.time()
    rows = [["DCC", "VERSION", "PID", "CHANNEL", "TOKEN", "UP", "SCENE"]]
    for record in records:
        rows.append(
            [
                record.dcc,
                record.dcc_version or "-",
                str(record.pid),
                record.channel,
                "yes" if record.token_required else "no",
                _age(now - record.started_at),
                record.scene or "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"
