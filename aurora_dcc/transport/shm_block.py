"""One shared-memory block: create it, map it, remove it.

On Linux a POSIX shared-memory object is the file ``/dev/shm/<name>`` (what
``shm_open`` opens), so a block is that file, opened with ``O_NOFOLLOW``,
checked with ``fstat`` on the open descriptor (owner and size: no window
between the check and the mapping) and mapped with ``mmap``; nothing of
``multiprocessing`` is imported (importing it makes Blender 3.4 crash when it
quits). Elsewhere (macOS, Windows) a block is a
``multiprocessing.shared_memory.SharedMemory``, kept away from Python's
``resource_tracker``, which would warn about and unlink blocks other processes
own, and whose start runs ``sys.executable`` (inside a DCC, the DCC).
Peers on either kind interoperate: both are what ``SharedMemory(name)`` opens.

Usage::

    block = create_block("ad1000_4711_a1b2c3_1_1", 65536)
    block.buf[:3] = b"abc"
    seen = attach_block("ad1000_4711_a1b2c3_1_1")    # read-only mapping, owner checked
    bytes(seen.buf[:3])                               # b'abc'
    is_current(seen)                                  # True: the name still names it
    seen.close(); block.close(); unlink_block(block.name)
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, Optional

from ..errors import ErrorCode, SerializationError

__all__ = ["SHM_DIR", "FileBlock", "attach_block", "create_block", "is_current", "unlink_block"]

SHM_DIR = "/dev/shm"
"""Where Linux shows POSIX shared memory as files."""

_FILES = sys.platform.startswith("linux") and os.path.isdir(SHM_DIR)
_TRACK_ARG = sys.version_info >= (3, 13)  # SharedMemory(track=False) exists
_tracker_lock = threading.Lock()


class FileBlock:
    """A block as a ``/dev/shm`` file mapped in this process (Linux).

    ``buf`` is the mapping (read-only for a block attached by a receiver);
    ``close`` unmaps it and raises ``BufferError`` while a view of it is alive,
    as ``SharedMemory.close`` does.

    Usage::

        block = FileBlock("ad1000_4711_a1b2c3_1_1", create=True, size=65536)
        block.close()
    """

    def __init__(self, name: str, *, create: bool, size: int = 0) -> None:
        self.name = name
        self._path = path = os.path.join(SHM_DIR, name)
        flags = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        flags |= os.O_RDWR | os.O_CREAT | os.O_EXCL if create else os.O_RDONLY
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            stat = os.fstat(fd)
            if stat.st_uid != os.geteuid():
                raise PermissionError(f"shared-memory block {name!r} belongs to another user")
            self.size = stat.st_size
            self._identity = (stat.st_dev, stat.st_ino, stat.st_size)
            if not self.size:
                raise ValueError(f"shared-memory block {name!r} is empty")
            access = mmap.ACCESS_WRITE if create else mmap.ACCESS_READ
            self._mmap: Optional[mmap.mmap] = mmap.mmap(fd, self.size, access=access)
        except BaseException:
            if create:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        finally:
            os.close(fd)
        self._buf: Optional[memoryview] = memoryview(self._mmap)

    @property
    def buf(self) -> memoryview:
        if self._buf is None:
            raise ValueError(f"shared-memory block {self.name!r} is closed")
        return self._buf

    def close(self) -> None:
        """Unmap; ``BufferError`` while a view of the mapping is alive (try again later)."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()  # BufferError here leaves it mapped, for a later close()
            self._mmap = None

    def unlink(self) -> None:
        os.unlink(self._path)

    def is_current(self) -> bool:
        """Whether the name still names the file mapped here, at the size mapped (one
        ``stat``): a block made anew under the name, or resized, needs a new mapping."""
        try:
            stat = os.stat(self._path, follow_symlinks=False)
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino, stat.st_size) == self._identity

    def __repr__(self) -> str:
        return f"FileBlock({self.name!r}, size={self.size})"


@contextlib.contextmanager
def _untracked() -> Iterator[None]:
    """Before 3.13, keep ``SharedMemory`` from registering with the resource tracker."""
    if _TRACK_ARG or os.name == "nt":
        yield
        return
    from multiprocessing import resource_tracker

    with _tracker_lock:
        register, unregister = resource_tracker.register, resource_tracker.unregister
        resource_tracker.register = resource_tracker.unregister = _no_tracking  # type: ignore[assignment]
        try:
            yield
        finally:
            resource_tracker.register, resource_tracker.unregister = register, unregister


def _no_tracking(name: str, rtype: str) -> None:
    """Stands in for the resource tracker while a block is created, opened or unlinked."""


def _shared_memory(name: str, create: bool, size: int = 0) -> Any:
    from multiprocessing.shared_memory import SharedMemory

    with _untracked():
        if _TRACK_ARG:
            return SharedMemory(name, create=create, size=size, track=False)  # type: ignore[call-arg]
        return SharedMemory(name, create=create, size=size)


def create_block(name: str, size: int) -> Any:
    """A new block of ``size`` bytes named ``name``, mapped read-write."""
    if _FILES:
        return FileBlock(name, create=True, size=size)
    return _shared_memory(name, True, size)


def attach_block(name: str) -> Any:
    """Map the existing block ``name`` (read-only where the platform allows).

    Raises ``SerializationError`` (-32602) if it does not exist, belongs to
    another user (checked where the platform shows the owner) or is empty.
    """
    try:
        if _FILES:
            return FileBlock(name, create=False)
        return _shared_memory(name, False)
    except FileNotFoundError:
        raise _bad(f"no shared-memory block named {name!r}") from None
    except (OSError, ValueError) as exc:
        raise _bad(f"cannot map shared-memory block {name!r}: {exc}") from None


def is_current(block: Any) -> bool:
    """Whether ``block``'s name still names what it maps (Linux, where a name is a file;
    elsewhere ``True``: a name is not reused while it is mapped, PROTOCOL.md "Buffers")."""
    return block.is_current() if isinstance(block, FileBlock) else True


def unlink_block(name: str) -> None:
    """Remove block ``name`` (gone already is fine); mappings of it stay valid."""
    if _FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, name))
        return
    try:
        block = _shared_memory(name, False)
    except (OSError, ValueError):
        return
    try:
        with _untracked(), contextlib.suppress(FileNotFoundError):
            block.unlink()
    finally:
        block.close()


def _bad(text: str) -> SerializationError:
    return SerializationError(text, ErrorCode.INVALID_PARAMS)
