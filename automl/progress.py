"""Progress of a fit: a live status line on a terminal, plain log lines otherwise.

Everything goes to stderr, so stdout stays clean for what a command prints.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

PLAIN_INTERVAL_S = 10.0
"""When not on a terminal, a status line at most this often (plus every new best)."""


class Progress:
    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.done = 0
        self.best_line = ""
        self.last_plain = 0.0
        self.best_number: int | None = None

    @property
    def interactive(self) -> bool:
        return self.enabled and self.console.is_terminal

    def _log(self, message: str) -> None:
        if self.enabled:
            if self.interactive:
                self.console.print(message, highlight=False)
            else:
                print(message, file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        self._log(message)

    def warn(self, message: str) -> None:
        self._log(f"warning: {message}")

    def start(self, message: str) -> None:
        self._log(message)
        if self.interactive:
            self.live = Live(Text("starting workers..."), console=self.console, refresh_per_second=4,
                             transient=True)
            self.live.start()

    def trial_done(self, outcome, best, time_left_s: float) -> None:
        self.done += 1
        if best is not None:
            self.best_line = f"best {best.cv_score:.5g} ({best.family}_{best.number})"
        status = f"trials {self.done} | {self.best_line or 'no result yet'} | {max(0, time_left_s):.0f}s left"
        if self.live is not None:
            self.live.update(Text(status))
            return
        new_best = best is not None and best.number != self.best_number
        if new_best or time.monotonic() - self.last_plain >= PLAIN_INTERVAL_S:
            self._log(status)
            self.last_plain = time.monotonic()
        if best is not None:
            self.best_number = best.number

    def stop(self) -> None:
        """Take the live line down (also when the fit fails)."""
        if self.live is not None:
            self.live.stop()
            self.live = None

    def finish(self, top, holdout: dict | None, elapsed_s: float) -> None:
        self.stop()
        line = f"done in {elapsed_s:.1f}s: {self.done} trials, best {top['model']} cv {top['cv_score']:.5g}"
        if holdout:
            line += f", holdout {holdout['metric']} {holdout['score']:.5g}"
        self._log(line)
