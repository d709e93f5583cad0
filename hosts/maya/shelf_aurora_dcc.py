"""A Maya shelf button's command: start aurora_dcc's host if needed, and show its status."""

from aurora_dcc.hosts import maya as aurora_maya

host = aurora_maya.start()
print(
    f"aurora_dcc: host {host.peer_name!r} listening on {host.name!r}"
    f" ({len(host.rpc.peers)} client(s)); tools connect with AURORAVIEW_IPC_CHANNEL={host.name}"
)
