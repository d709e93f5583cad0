"""The ``install``, ``uninstall`` and ``env`` subcommands of ``aurora-dcc``.

The CLI adds them with ``add_commands(subparsers)`` and runs
``args.run(args)``, which returns the exit status.

Usage::

    parser = argparse.ArgumentParser(prog="aurora-dcc")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["install", "maya", "--dry-run"])
    status = args.run(args)
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..deploy import dccs, env, steps
from ..deploy.errors import DeployError, StepFailed

EXIT_FAILED = 1
EXIT_USAGE = 2

_INSTALL_EPILOG = """\
Where it writes (user-level folders only, never admin):
  maya     <user modules folder>/aurora_dcc.mod  ($MAYA_APP_DIR/modules, ~/maya/modules, ...)
  houdini  <prefs>/packages/aurora_dcc.json  ($HOUDINI_USER_PREF_DIR, or each ~/houdiniX.Y)
  nuke     a marked block at the end of ~/.nuke/init.py (the rest of it is untouched)
  max      aurora_dcc_startup.py in the user startup scripts folder
           (%LOCALAPPDATA%\\Autodesk\\3dsMax\\<ver> - 64bit\\ENU\\scripts\\startup)
  blender  <scripts>/addons/aurora_dcc_blender and <scripts>/modules/aurora_dcc, then enabled
Maya, Houdini, Nuke and 3ds Max load a copy of aurora_dcc and qtpy kept in the
user's aurora_dcc data folder (~/.local/share/aurora_dcc/<version> on Linux),
not this Python environment. Running it again changes nothing; `uninstall`
removes exactly what it wrote.

examples:
  aurora-dcc install maya --dry-run          show every file it would write, write none
  aurora-dcc install maya --dcc-version 2025 --python /usr/autodesk/maya2025/bin/mayapy
  aurora-dcc install houdini --dcc-version 20.5
  aurora-dcc install blender --blender /opt/blender-4.2/blender
"""

_UNINSTALL_EPILOG = """\
It removes what `aurora-dcc install <dcc>` recorded writing, and only that:
aurora_dcc's block in a file you own goes, your own lines stay.

examples:
  aurora-dcc uninstall nuke --dry-run
  aurora-dcc uninstall maya
"""

_ENV_EPILOG = """\
The variables point at the aurora_dcc this command runs from (install it in a
folder of its own) and at its startup files. Blender ignores PYTHONPATH: use
`aurora-dcc install blender` there.

examples:
  aurora-dcc env maya                       export PYTHONPATH=...
  aurora-dcc env houdini --format json      for a launcher
  eval "$(aurora-dcc env nuke)" && nuke     in a wrapper script
"""


def _add_dcc(parser: argparse.ArgumentParser, choices: list[str]) -> None:
    parser.add_argument("dcc", choices=choices, help="the DCC: " + ", ".join(choices))


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``install``, ``uninstall`` and ``env`` to the CLI's subcommands."""
    formatter = argparse.RawDescriptionHelpFormatter
    install = commands.add_parser(
        "install",
        help="install aurora_dcc into a DCC's user startup (no admin needed)",
        description="Install aurora_dcc into a DCC's user-level startup, so that the DCC "
        "starts its aurora_dcc host at launch.",
        epilog=_INSTALL_EPILOG,
        formatter_class=formatter,
    )
    _add_dcc(install, list(dccs.TITLES))
    install.add_argument(
        "--dry-run",
        action="store_true",
        help="show every file it would write or change; write none",
    )
    install.add_argument(
        "--dcc-version",
        action="append",
        default=[],
        metavar="VERSION",
        help="a DCC version to install for (repeatable): Maya 2025, Houdini 20.5, 3ds Max "
        "2025, Blender 4.2. Default: Maya, every version; the others, those whose user "
        "folder exists",
    )
    install.add_argument(
        "--python",
        metavar="PATH",
        help="the DCC's own Python (mayapy, hython, ...): orjson is installed with it (pip)",
    )
    install.add_argument(
        "--blender",
        metavar="PATH",
        help="the Blender executable that enables the add-on (default: `blender` on PATH)",
    )
    install.add_argument(
        "--no-enable", action="store_true", help="Blender: copy the add-on, do not enable it"
    )
    install.set_defaults(run=run_install)

    uninstall = commands.add_parser(
        "uninstall",
        help="remove what `install` wrote for a DCC",
        description="Remove aurora_dcc from a DCC's user-level startup.",
        epilog=_UNINSTALL_EPILOG,
        formatter_class=formatter,
    )
    _add_dcc(uninstall, list(dccs.TITLES))
    uninstall.add_argument(
        "--dry-run", action="store_true", help="show every file it would remove or change"
    )
    uninstall.set_defaults(run=run_uninstall)

    env_parser = commands.add_parser(
        "env",
        help="print the environment variables that load aurora_dcc into a DCC",
        description="Print the environment variables that make a DCC load aurora_dcc, for "
        "DCCs started through rez, a launcher or a wrapper script (instead of `install`).",
        epilog=_ENV_EPILOG,
        formatter_class=formatter,
    )
    _add_dcc(env_parser, [d for d in dccs.TITLES if d != "blender"])
    env_parser.add_argument(
        "--format",
        choices=env.FORMATS,
        default=env.default_format(),
        help="sh (export ...), cmd (Windows set ...) or json (default: this platform's shell)",
    )
    env_parser.set_defaults(run=run_env)


def _exit_status(step: Callable[[], None], what: str) -> int:
    """Run ``step``; its failure as one line on stderr and an exit status."""
    try:
        step()
    except DeployError as exc:
        print(f"aurora-dcc: {exc}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, StepFailed) else EXIT_USAGE
    except OSError as exc:  # a folder that cannot be written, a disk full
        print(f"aurora-dcc: {what} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _echo(line: str) -> None:
    print(line, flush=True)  # before a long pip or Blender run


def run_install(args: argparse.Namespace) -> int:
    options = dccs.Options(
        versions=tuple(args.dcc_version),
        python=args.python,
        blender=args.blender,
        enable=not args.no_enable,
    )

    def install() -> None:
        steps.install(dccs.plan_for(args.dcc, options), dry_run=args.dry_run, echo=_echo)

    return _exit_status(install, "install")


def run_uninstall(args: argparse.Namespace) -> int:
    def uninstall() -> None:
        steps.uninstall(args.dcc, dccs.TITLES[args.dcc], dry_run=args.dry_run, echo=_echo)

    return _exit_status(uninstall, "uninstall")


def run_env(args: argparse.Namespace) -> int:
    def show() -> None:
        found, notes = env.variables(args.dcc)
        print(env.render(found, notes, args.format))

    return _exit_status(show, "env")
