"""Fake ``maya.cmds`` following the documented signatures, main thread only.

``SelectionChanged`` scriptJobs run after each ``select`` once Maya is idle
(deferred), as scriptJob events do.
"""

from __future__ import annotations

import fnmatch
import itertools
from typing import Any, Callable, Optional

from fake_main_thread import api_call, later

VERSION = "2025"
SCENE = "/projects/shot010/scenes/layout.ma"
NODES = ["persp", "top", "pCube1", "pSphere1", "pCylinder1"]

_nodes = list(NODES)
_selection: list[str] = []
_jobs: dict[int, tuple[str, Callable[[], Any]]] = {}
_job_ids = itertools.count(1)


BATCH = False


def about(version: bool = False, batch: bool = False) -> Any:
    api_call("cmds.about")
    if version == batch:
        raise TypeError("fake cmds.about: version=True or batch=True")
    return VERSION if version else BATCH


def file(query: bool = False, sceneName: bool = False) -> str:
    api_call("cmds.file")
    if not (query and sceneName):
        raise TypeError("fake cmds.file: only query=True, sceneName=True")
    return SCENE


def ls(*patterns: str, long: bool = False, selection: bool = False) -> list[str]:
    api_call("cmds.ls")
    names = list(_selection) if selection else list(_nodes)
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return names


def objExists(name: str) -> bool:
    api_call("cmds.objExists")
    return name in _nodes


def select(*objects: Any, replace: bool = False, add: bool = False, clear: bool = False) -> None:
    api_call("cmds.select")
    names: list[str] = []
    for obj in objects:
        names.extend([obj] if isinstance(obj, str) else obj)
    for name in names:
        if name not in _nodes:
            raise ValueError(f"No object matches name: {name}")
    if clear:
        _selection.clear()
    elif add and not replace:
        _selection.extend(n for n in names if n not in _selection)
    else:
        _selection[:] = names
    for job, (event, _fn) in list(_jobs.items()):
        if event == "SelectionChanged":
            later(_run_job, job)


def _run_job(job: int) -> None:
    entry = _jobs.get(job)
    if entry is not None:  # not killed meanwhile
        entry[1]()


def scriptJob(
    event: Optional[list[Any]] = None, kill: Optional[int] = None, force: bool = False
) -> Optional[int]:
    api_call("cmds.scriptJob")
    if kill is not None:
        if kill not in _jobs:
            raise RuntimeError(f"Job #{kill} does not exist")
        del _jobs[kill]
        return None
    if event is None or len(event) != 2 or not callable(event[1]):
        raise TypeError("fake cmds.scriptJob: event=[name, callable] or kill=<job>")
    job = next(_job_ids)
    _jobs[job] = (str(event[0]), event[1])
    return job


def jobs() -> list[int]:
    """Test helper (not Maya API): the live scriptJob numbers."""
    return sorted(_jobs)
