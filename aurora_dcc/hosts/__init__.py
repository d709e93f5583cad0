"""Hosts: aurora_dcc running inside an application.

- :mod:`aurora_dcc.hosts.qt_host`: ``QtHost``, the server inside any running Qt
  application (Maya, Houdini, Nuke, 3ds Max all run Qt); ``start_host()`` /
  ``stop_host()`` for shelf buttons and startup scripts.
- :mod:`aurora_dcc.hosts.standalone`: ``StandaloneHost``, the embedded
  default host: a Qt application of its own with a small in-memory scene,
  used by ``make demo`` and by tests, and a stand-in for a DCC during
  development.

Importing this package imports no Qt; the modules above do.
"""
