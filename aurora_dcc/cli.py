"""``aurora-dcc``: talk to a running aurora_dcc server from a shell or an agent.

Usage::

    aurora-dcc --channel auroraview_4711 handlers
    aurora-dcc --channel auroraview_4711 call scene.info '{"verbose": true}'
    aurora-dcc --channel auroraview_4711 ping
    aurora-dcc --channel auroraview_4711 listen 'selection.*' --count 10

``--channel`` and ``--token`` default to ``AURORAVIEW_IPC_CHANNEL`` and
``AURORAVIEW_IPC_TOKEN``. Results and events are printed as JSON on stdout
(one line each); errors go to stderr with exit status 1 (2 for usage).
This is the only module of the package that writes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Optional

from .errors import IpcChannelError
from .process.environment import ENV_CHANNEL, ENV_TOKEN
from .rpc.peer import Peer
from .transport.local_socket import LocalSocketChannel

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aurora-dcc", description=__doc__.split("\n")[0])
    parser.add_argument("--channel", default=os.environ.get(ENV_CHANNEL), help="channel name")
    parser.add_argument("--token", default=os.environ.get(ENV_TOKEN), help="session token")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    commands = parser.add_subparsers(dest="command", required=True)
    call = commands.add_parser("call", help="call a method and print its result")
    call.add_argument("method")
    call.add_argument("data", nargs="?", default="{}", help="JSON params (default {})")
    commands.add_parser("ping", help="print the round-trip time in milliseconds")
    commands.add_parser("handlers", help="print the methods the server offers")
    listen = commands.add_parser("listen", help="print events as they arrive")
    listen.add_argument("pattern", nargs="?", default="*", help="event pattern, e.g. 'scene.*'")
    listen.add_argument("--count", type=int, default=0, help="stop after this many events")
    return parser


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _listen(peer: Peer, pattern: str, count: int) -> None:
    done = threading.Event()
    seen = 0

    def show(event: str, data: Any) -> None:
        nonlocal seen
        _print({"event": event, "data": data})
        seen += 1
        if count and seen >= count:
            done.set()

    peer.on(pattern, show)
    closed = peer.channel.shutdown_state
    closed.on_shutdown(done.set)
    while not done.wait(0.2):
        pass


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if not args.channel:
        sys.stderr.write(f"aurora-dcc: no channel: pass --channel or set {ENV_CHANNEL}\n")
        return 2
    try:
        data = json.loads(args.data) if args.command == "call" else None
    except json.JSONDecodeError as exc:
        sys.stderr.write(f"aurora-dcc: params are not valid JSON: {exc}\n")
        return 2
    try:
        channel = LocalSocketChannel.connect(args.channel, token=args.token, timeout=args.timeout)
    except (IpcChannelError, OSError) as exc:  # one line, no traceback (e.g. a bad name)
        sys.stderr.write(f"aurora-dcc: cannot connect to {args.channel!r}: {exc}\n")
        return 1
    peer = Peer(channel, timeout=args.timeout, session_started=True)
    try:
        if args.command == "call":
            _print(peer.request(args.method, data))
        elif args.command == "ping":
            _print(round(peer.ping() * 1000.0, 3))
        elif args.command == "handlers":
            names = channel.peer_info.get("handlers")  # the ready's field on the wire
            _print(sorted(names) if isinstance(names, list) else [])
        else:
            _listen(peer, args.pattern, args.count)
    except IpcChannelError as exc:
        code = getattr(exc, "code", "")
        sys.stderr.write(f"aurora-dcc: {args.command} failed ({code}): {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        peer.close()
        channel.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
