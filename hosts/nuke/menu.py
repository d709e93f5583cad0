"""Nuke runs ~/.nuke/menu.py when its GUI starts: start aurora_dcc's host on the main thread."""

import nuke

from aurora_dcc.hosts import nuke as aurora_nuke

nuke.executeInMainThread(aurora_nuke.start)
