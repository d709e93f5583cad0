"""Houdini runs this once its UI is ready: start aurora_dcc's host on the main thread.

Guarded: when aurora_dcc cannot be imported (not installed, or a Python older
than 3.9) or its host does not start, one line on Houdini's console says why,
and Houdini goes on.
"""

import sys


def _aurora_dcc_startup():
    def report(what, exc):
        if sys.version_info < (3, 9):  # noqa: UP036 -- the DCC's Python may be older
            major, minor = sys.version_info[:2]
            what += f" (aurora_dcc needs Python 3.9+; this Houdini has {major}.{minor})"
        sys.stderr.write(f"aurora_dcc: {what}: {type(exc).__name__}: {exc}; Houdini goes on\n")

    def start():
        try:
            aurora_houdini.start()
        except Exception as exc:
            report("the host did not start", exc)

    try:
        import hdefereval

        from aurora_dcc.hosts import houdini as aurora_houdini
    except Exception as exc:  # ImportError, or a SyntaxError on an old Python
        report("cannot import aurora_dcc", exc)
        return
    hdefereval.executeDeferred(start)


_aurora_dcc_startup()
del _aurora_dcc_startup
