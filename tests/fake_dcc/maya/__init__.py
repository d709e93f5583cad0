"""Fake ``maya`` package: ``maya.cmds`` and ``maya.utils`` as far as aurora_dcc uses them."""
