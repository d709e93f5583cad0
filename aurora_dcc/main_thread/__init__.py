"""Marshalling onto a host's main thread, where DCC APIs may be called.

- :mod:`.channel`: ``DccIpcChannel``, a channel whose handlers run on the
  main thread (woken through a :class:`~aurora_dcc.channel.waker.Waker`, Qt's
  by default), and ``call_in_main_thread(fn, *args, **kwargs)`` from any thread.
- :mod:`.in_process`: ``InProcessServer`` and ``InProcessChannel``, a host's
  clients in its own process, served on the main thread without a socket
  (what ``create_for_context()`` returns where a host runs).

Importing this package imports no Qt; Qt is imported when a channel attaches.
"""

from __future__ import annotations

from .channel import DccIpcChannel, call_in_main_thread

__all__ = ["DccIpcChannel", "call_in_main_thread"]
