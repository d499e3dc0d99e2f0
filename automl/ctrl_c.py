"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when
SIGINT arrives. If that is inside a finalizer (a ``__del__`` the garbage
collector runs, as SQLAlchemy's are while Optuna writes to the study), the
interpreter prints "Exception ignored in ..." and drops it: the run would go
on as if nobody had pressed Ctrl-C. ``remembering_ctrl_c`` keeps the raise and
also remembers the key press, so a loop can look again at points where it is
safe to stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CtrlC:
    """Whether Ctrl-C was pressed while ``remembering_ctrl_c`` was active."""

    def __init__(self) -> None:
        self.pressed = False

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed, even if its first raise was dropped."""
        if self.pressed:
            raise KeyboardInterrupt


@contextmanager
def remembering_ctrl_c() -> Iterator[CtrlC]:
    """Within the block, SIGINT raises KeyboardInterrupt as usual and sets the
    yielded ``CtrlC.pressed``. Off the main thread, where no signal handler can be
    installed, nothing is remembered (and nothing is received either)."""
    ctrl_c = CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield ctrl_c
        return

    def on_sigint(signum: int, frame: object) -> None:
        ctrl_c.pressed = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield ctrl_c
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
