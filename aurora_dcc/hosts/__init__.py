"""Hosts: aurora_dcc running inside an application.

- :mod:`aurora_dcc.hosts.qt_host`: ``QtHost``, the server inside any running Qt
  application (Maya, Houdini, Nuke, 3ds Max all run Qt); ``start_host()`` /
  ``stop_host()`` for shelf buttons and startup scripts. Called again with
  other settings, ``start_host()`` raises :mod:`.host_settings`'s
  ``HostSettingsError``.
- :mod:`aurora_dcc.hosts.scene`: ``SceneAdapter`` (what one DCC's API must
  answer) and ``serve_scene()``, the ``scene.info`` / ``scene.ls`` /
  ``scene.select`` handlers and ``selection.changed`` events every host serves.
- :mod:`.maya`, :mod:`.houdini`, :mod:`.nuke`, :mod:`.max3ds`: an adapter
  each, and ``start()`` for the DCC's startup files (the repository's
  ``hosts/`` folder holds those files and how to install them).
- :mod:`aurora_dcc.hosts.blender`: ``BlenderHost``, the host for Blender, which
  has no Qt: the pure-Python socket server, with handlers run on Blender's
  main thread by a ``bpy.app.timers`` waker (:mod:`.blender_waker`, woken by
  :mod:`.blender_wake`); :mod:`.blender_scene` is its scene adapter and
  :mod:`.scene_handlers` the Qt-free part of :mod:`.scene` that it shares.
  These import neither Qt nor, until a host starts, ``bpy``.
- :mod:`aurora_dcc.hosts.standalone`: ``StandaloneHost``, the embedded
  default host: a Qt application of its own with an in-memory scene served
  through the same handlers, used by ``make demo`` and by tests, and a
  stand-in for a DCC during development.

Importing this package imports no Qt (nor any DCC API); the modules above
import Qt, and a DCC's API when its adapter is made.
"""
