"""Install aurora_dcc into each DCC's user-level startup, and out again.

``aurora-dcc install <maya|houdini|nuke|max|blender>`` writes the DCC's
conventional per-user entry (a Maya module, a Houdini package, a marked block
in ``~/.nuke/init.py``, a 3ds Max user startup script, a Blender add-on) that
loads a copy of aurora_dcc kept in the user's aurora_dcc data folder;
``uninstall`` removes exactly what it wrote; ``env`` prints environment
variables instead, for studios that launch DCCs through wrappers.
docs/install.md is the user's guide.

Parts: ``locations`` (where each DCC looks), ``payload`` (what is copied),
``plan`` and ``dccs`` (what each DCC's install writes), ``steps`` (showing or
making the changes), ``state`` (the record uninstall reads) and ``env``; the
CLI's ``install``/``uninstall``/``env`` subcommands are in
``aurora_dcc.cli.deploy_commands``. Nothing here writes to stdout: lines go to
the ``echo`` callable the caller passes.

Usage::

    from aurora_dcc.deploy import dccs, steps
    lines = []
    steps.install(dccs.plan_for("nuke", dccs.Options()), dry_run=True, echo=lines.append)
"""
