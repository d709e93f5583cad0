"""``aurora-dcc``: start a host, find running hosts, and talk to them from a shell.

Usage::

    main(["serve"])                           # a standalone host, until Ctrl-C
    main(["hosts"])                           # the running hosts, as a table
    main(["call", "scene.info"])              # the one running host answers

The commands and their options are in :data:`EPILOG` (``aurora-dcc --help``).
This package (with :mod:`.client`, :mod:`.serve`, :mod:`.doctor`) is the only
part of aurora_dcc that writes to stdout: results and events as JSON, one
line each; errors go to stderr as one line with a distinct exit status
(:mod:`.exit_codes`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from .. import __version__
from ..process.environment import ENV_CHANNEL, ENV_TOKEN
from ..protocol.handshake import PROTOCOL_VERSION
from .buffer_output import show_call_result
from .deploy_commands import add_commands
from .exit_codes import EXIT_CODES_HELP, CliError, ExitCode

__all__ = ["EPILOG", "main"]

EPILOG = f"""\
examples:
  aurora-dcc serve                          start a standalone host (stays up; Ctrl-C stops)
  aurora-dcc hosts                          list the running hosts (--json for scripts)
  aurora-dcc call scene.info                call the one running host
  aurora-dcc --channel maya call scene.ls pattern='pCube*'
  aurora-dcc call scene.select '{{"nodes": ["cube1"]}}'
  echo '{{"type": "cube"}}' | aurora-dcc call scene.create -
  aurora-dcc ping                           connect time and round trip, in ms
  aurora-dcc listen 'selection.*' --count 10
  aurora-dcc doctor                         check Python, Qt, orjson, the hosts
  aurora-dcc install maya --dry-run         what installing into Maya would write

which host (--channel TARGET):
  TARGET is a channel name, a DCC (maya, houdini, nuke, 3dsmax, blender,
  standalone), a peer name (maya-2025) or a pid. Without --channel:
  {ENV_CHANNEL} if set (a process a host started), else the one
  running host; several running hosts is an error that lists them.

token:
  found for you: from the 0600 token file beside the host's record (see
  'aurora-dcc hosts'), else {ENV_TOKEN}. Avoid --token: other users
  can read a command line (ps).

{EXIT_CODES_HELP}
"""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The options of every command that connects: before or after the command name."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--channel",
        "-c",
        metavar="TARGET",
        default=default(None),
        help="the host: a channel, DCC, peer name or pid (default: the one running host;"
        " 'aurora-dcc --help' says more)",
    )
    parser.add_argument(
        "--token",
        default=default(None),
        help=f"the host's token; discouraged (visible in ps): the token file or {ENV_TOKEN}"
        " is read for you",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default(10.0),
        metavar="SECONDS",
        help="for connecting and each call (default 10)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="on a failed call, also print the handler's traceback from the host",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurora-dcc",
        description="Start an aurora_dcc host, find running hosts, and talk to them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"aurora-dcc {__version__} (protocol {PROTOCOL_VERSION})",
    )
    _connection_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, description: str = "", connects: bool = True
    ) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=[common] if connects else [],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=EXIT_CODES_HELP,
        )

    serve = command(
        "serve",
        "start a standalone host that stays up until Ctrl-C",
        "Start a standalone host (a small in-memory scene on a Qt event loop of its own)\n"
        "and list it for 'aurora-dcc hosts'. Needs a Qt binding (PySide6 or PySide2).",
        connects=False,
    )
    serve.add_argument("--name", help="the channel name (default auroraview_<pid>)")
    serve.add_argument("--no-token", action="store_true", help="accept clients without a token")
    hosts = command("hosts", "list the running hosts", connects=False)
    hosts.add_argument("--json", action="store_true", help="print the records as JSON")
    call = command(
        "call",
        "call a method and print its result as JSON",
        "Call METHOD on the host and print its result as JSON.\n\n"
        "params:\n"
        '  \'{"nodes": ["a"]}\'    one JSON text (an object, or a list of arguments)\n'
        "  -                     JSON read from stdin\n"
        "  key=value ...         an object; each value is JSON if it parses (3, true,\n"
        "                        '[\"a\"]'), else a string (type=cube)\n"
        "  (none)                {}\n\n"
        "A buffer in the result (e.g. mesh.points) is printed as\n"
        '{"$buffer": {"format", "shape", "nbytes"}}; --out FILE saves its raw bytes.',
    )
    call.add_argument("method", help="the method, e.g. scene.info ('handlers' lists them)")
    call.add_argument("params", nargs="*", help="JSON, '-' for stdin, or key=value pairs")
    call.add_argument(
        "--out",
        metavar="FILE",
        help="save the result's one buffer (raw bytes, C order) to FILE; exit 1 if it holds"
        " none or several",
    )
    command(
        "ping",
        "print the connect time and the round trip in milliseconds",
        "Connect and ping; print connect_ms and round_trip_ms as JSON. A Qt host\n"
        "answers on its main thread: when it is slow to answer (over a quarter of a\n"
        "second) or does not answer in time, ping says so on stderr.",
    )
    command("handlers", "print the methods the host serves")
    listen = command("listen", "print events as they arrive (exit 5 when the host goes away)")
    listen.add_argument("pattern", nargs="?", default="*", help="event pattern, e.g. 'scene.*'")
    listen.add_argument("--count", type=int, default=0, help="stop after this many events")
    command(
        "doctor",
        "check Python, the Qt binding, orjson, the runtime folder and each live host",
        connects=False,
    )
    add_commands(commands)  # install, uninstall, env: aurora_dcc.deploy, each with its `run`
    return parser


def _run(args: argparse.Namespace) -> int:
    from . import client

    run = getattr(args, "run", None)
    if run is not None:  # a deploy command: no connection, its own exit status
        return int(run(args))
    if args.command == "serve":
        from .serve import serve

        return serve(args.name, token=not args.no_token)
    if args.command == "doctor":
        from .doctor import doctor

        return doctor(timeout=min(args.timeout, 5.0))
    if args.command == "hosts":
        return _hosts(args.json)
    params = client.parse_params(args.params) if args.command == "call" else None
    host, connect_s = client.open_client(args.channel, token=args.token, timeout=args.timeout)
    try:
        if args.command == "call":
            result = client.call(host, args.method, params)
            show_call_result(result, args.out, client.print_json)  # buffers: --out or summaries
        elif args.command == "ping":
            client.print_json(client.ping(host, connect_s))
        elif args.command == "handlers":
            client.print_json(client.handler_names(host))
        else:
            client.listen(host, args.pattern, args.count)
    finally:
        host.close()
    return ExitCode.OK


def _hosts(as_json: bool) -> int:
    from ..errors import IpcChannelError
    from ..process.discovery import list_hosts
    from .client import hosts_table, print_json

    try:
        records = list_hosts()
    except IpcChannelError as exc:  # the runtime folder is refused (owner, mode)
        raise CliError(ExitCode.CALL_FAILED, str(exc)) from None
    if as_json:
        print_json([record.to_json() for record in records])
    elif records:
        sys.stdout.write(hosts_table(records) + "\n")
    else:
        sys.stderr.write("aurora-dcc: no hosts running (start one: aurora-dcc serve)\n")
    if not as_json and os.environ.get(ENV_CHANNEL):  # it wins when --channel is left out
        sys.stderr.write(
            f"aurora-dcc: {ENV_CHANNEL}={os.environ[ENV_CHANNEL]} is set: commands without"
            " --channel talk to that channel\n"
        )
    return ExitCode.OK


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(_run(args))
    except CliError as exc:
        sys.stderr.write(f"aurora-dcc: {exc.message}\n")
        if exc.detail:
            if args.verbose:
                sys.stderr.write(exc.detail + "\n")
            else:
                sys.stderr.write("aurora-dcc: (-v shows the handler's traceback)\n")
        return int(exc.code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # stdout's reader left (`| head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush does not fail again
        return int(ExitCode.OK)
