"""3ds Max (2022+) runs the .py files of scripts/startup on the main thread at startup."""

from aurora_dcc.hosts import max3ds

max3ds.start()
