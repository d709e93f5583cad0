"""Houdini runs this once its UI is ready: start aurora_dcc's host on the main thread."""

import hdefereval

from aurora_dcc.hosts import houdini as aurora_houdini

hdefereval.executeDeferred(aurora_houdini.start)
