"""Nuke runs each plugin path's menu.py when its GUI starts: start aurora_dcc's host.

The host starts on the main thread. Guarded: when aurora_dcc cannot be imported
(not installed, or a Python older than 3.9) or its host does not start, one
line on Nuke's terminal says why, and Nuke goes on with the other menu.py files.
"""

import sys


def _aurora_dcc_startup():
    def report(what, exc):
        if sys.version_info < (3, 9):  # noqa: UP036 -- the DCC's Python may be older
            major, minor = sys.version_info[:2]
            what += f" (aurora_dcc needs Python 3.9+; this Nuke has {major}.{minor})"
        sys.stderr.write(f"aurora_dcc: {what}: {type(exc).__name__}: {exc}; Nuke goes on\n")

    def start():
        try:
            aurora_nuke.start()
        except Exception as exc:
            report("the host did not start", exc)

    try:
        import nuke

        from aurora_dcc.hosts import nuke as aurora_nuke
    except Exception as exc:  # ImportError, or a SyntaxError on an old Python
        report("cannot import aurora_dcc", exc)
        return
    nuke.executeInMainThread(start)


_aurora_dcc_startup()  # Nuke runs menu.py in a shared namespace: leave no names there
del _aurora_dcc_startup
