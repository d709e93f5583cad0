"""Maya runs this at startup: start aurora_dcc's host once the UI is up (main thread).

Guarded: when aurora_dcc cannot be imported (not installed, or a Python older
than 3.9) or its host does not start, one line in the Script Editor says why,
and Maya's startup goes on (the next userSetup.py still runs). Nothing here
needs more than Maya's own Python, whatever its version.
"""

import sys


def _aurora_dcc_startup():
    def report(what, exc):
        if sys.version_info < (3, 9):  # noqa: UP036 -- the DCC's Python may be older
            major, minor = sys.version_info[:2]
            what += f" (aurora_dcc needs Python 3.9+; this Maya has {major}.{minor})"
        line = f"aurora_dcc: {what}: {type(exc).__name__}: {exc}; Maya goes on\n"
        # Output during userSetup.py reaches the Output Window only; once idle, the Script Editor
        try:
            import maya.utils

            maya.utils.executeDeferred(sys.stderr.write, line)
        except Exception:  # no Maya, or no event loop to defer to
            sys.stderr.write(line)

    def start():
        try:
            aurora_maya.start()
        except Exception as exc:
            report("the host did not start", exc)

    try:
        import maya.utils
        from maya import cmds

        from aurora_dcc.hosts import maya as aurora_maya
    except Exception as exc:  # ImportError, or a SyntaxError on an old Python
        report("cannot import aurora_dcc", exc)
        return
    if not cmds.about(batch=True):  # mayapy and batch renders have no UI to serve
        maya.utils.executeDeferred(start)


_aurora_dcc_startup()  # Maya runs this file in __main__: leave no names there
del _aurora_dcc_startup
