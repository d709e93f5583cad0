"""The one error the installer raises: a step it cannot take, said in a sentence."""

from __future__ import annotations


class DeployError(Exception):
    """An install, uninstall or env step that cannot be taken; the message says why and what to do.

    Usage::

        raise DeployError("no Houdini preferences folder found: use --dcc-version 20.5")
    """


class StepFailed(DeployError):
    """A program the install runs (pip, Blender) failed; the files written stay recorded.

    Usage::

        raise StepFailed("`mayapy -m pip install ...` failed (exit status 1): ...")
    """
