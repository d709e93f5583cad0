"""Maya runs this at startup: start aurora_dcc's host once the UI is up (main thread)."""

import maya.utils
from maya import cmds

from aurora_dcc.hosts import maya as aurora_maya

if not cmds.about(batch=True):  # mayapy and batch renders have no UI to serve
    maya.utils.executeDeferred(aurora_maya.start)
