"""Ctrl-C ends a command within a second, whatever it waits on.

Python runs its SIGINT handler (``KeyboardInterrupt``) only when the main thread runs
Python code; a read stalled inside a C library (DuckDB's HTTP client waits for its own
timeout) can hold that off for tens of seconds, and at exit Python joins the threads still
reading. ``arm`` adds a watcher: the C-level handler wakes it through
``signal.set_wakeup_fd``; the usual ``KeyboardInterrupt`` path gets ``GRACE_S`` to end the
process (cleaning up as it goes); past that the watcher writes the one line and ends it
with status 130. What a stopped run left in its staging folder is removed by the next run
(``mtquery.io.staging.sweep``).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

GRACE_S = 0.7
#: set once the interruption was reported (the watcher then only ends the process)
reported = threading.Event()
_armed = threading.Event()
_pair: list[socket.socket] = []


def arm(grace: float = GRACE_S) -> bool:
    """Start the watcher (main thread only, once; not when something else already uses
    the wakeup fd). Returns whether it runs."""
    if _armed.is_set() or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:
        reader.close()
        writer.close()
        return False
    if previous != -1:  # someone else's: leave it to them
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return False
    _armed.set()

    def watch() -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGINT in data and _armed.is_set():
                threading.Event().wait(grace)
                if not _armed.is_set():
                    continue
                if not reported.is_set():
                    try:
                        sys.stderr.write("mtquery: error: interrupted\n")
                        sys.stderr.flush()
                    except (OSError, ValueError):
                        pass
                os._exit(130)

    _pair[:] = [reader, writer]  # kept open for the process
    threading.Thread(target=watch, daemon=True, name="mtquery-interrupt").start()
    return True


def disarm() -> None:
    """Ctrl-C goes back to Python alone (a server that stops gracefully on it)."""
    _armed.clear()
