"""The ``aurora-dcc`` exit codes, and ``CliError``: a failure with its code and one line.

Usage::

    raise CliError(ExitCode.CONNECT_FAILED, "no aurora_dcc host is running")
    sys.exit(ExitCode.TIMEOUT)
"""

from __future__ import annotations

import enum
from typing import Optional

__all__ = ["EXIT_CODES_HELP", "CliError", "ExitCode"]


class ExitCode(enum.IntEnum):
    """What the command's exit status means (also in ``aurora-dcc --help``).

    Usage::

        if subprocess.run(["aurora-dcc", "ping"]).returncode == ExitCode.TIMEOUT: ...
    """

    OK = 0
    CALL_FAILED = 1  # the host answered with an error (or a local step failed)
    USAGE = 2  # bad arguments or parameters (argparse's own code too)
    CONNECT_FAILED = 3  # no such host, several match, refused, or bad token
    TIMEOUT = 4  # the host did not answer in time (its main thread is busy?)
    CONNECTION_LOST = 5  # the host went away during the command
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP = """\
exit status:
  0    success
  1    the call failed: the host answered with an error (code and message on stderr)
  2    usage: bad arguments, parameters that are not JSON, a bad channel name
  3    cannot connect: no host runs, several match, the host refused (token)
  4    timeout: the host did not answer in time (its main thread is busy or frozen)
  5    connection lost: the host went away during the command
  130  interrupted (Ctrl-C)"""


class CliError(Exception):
    """A failure the command reports in one line on stderr, exiting with ``code``.

    ``detail`` (e.g. a remote traceback) is printed after it with ``-v``.

    Usage::

        raise CliError(ExitCode.USAGE, "params are not valid JSON: ...")
    """

    def __init__(self, code: ExitCode, message: str, detail: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
