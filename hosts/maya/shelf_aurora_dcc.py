"""A Maya shelf button's command: start aurora_dcc's host if needed, and show its status.

Guarded: when aurora_dcc cannot be imported or its host does not start, the
Script Editor gets one line saying why instead of a traceback.
"""

import sys


def _aurora_dcc_shelf():
    try:
        from aurora_dcc.hosts import maya as aurora_maya

        host = aurora_maya.start()
    except Exception as exc:
        sys.stderr.write(f"aurora_dcc: the host did not start: {type(exc).__name__}: {exc}\n")
        return
    print(
        f"aurora_dcc: host {host.peer_name!r} listening on {host.name!r}"
        f" ({len(host.rpc.peers)} client(s)); tools connect with AURORAVIEW_IPC_CHANNEL={host.name}"
    )


_aurora_dcc_shelf()  # a shelf command runs in __main__: leave no names there
del _aurora_dcc_shelf
