"""3ds Max (2022+) runs the .py files of its startup folders on the main thread at startup.

Guarded: when aurora_dcc cannot be imported (not installed, or a Python older
than 3.9) or its host does not start, one line in the MAXScript Listener says
why, and 3ds Max goes on with its other startup scripts.
"""

import sys


def _aurora_dcc_startup():
    def report(what, exc):
        if sys.version_info < (3, 9):  # noqa: UP036 -- the DCC's Python may be older
            major, minor = sys.version_info[:2]
            what += f" (aurora_dcc needs Python 3.9+; this 3ds Max has {major}.{minor})"
        sys.stderr.write(f"aurora_dcc: {what}: {type(exc).__name__}: {exc}; 3ds Max goes on\n")

    try:
        from aurora_dcc.hosts import max3ds
    except Exception as exc:  # ImportError, or a SyntaxError on an old Python
        report("cannot import aurora_dcc", exc)
        return
    try:
        max3ds.start()
    except Exception as exc:
        report("the host did not start", exc)


_aurora_dcc_startup()
del _aurora_dcc_startup
