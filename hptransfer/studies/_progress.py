"""A dependency-free one-line progress display on stderr (trials and the steps of the current trial).

On a terminal it redraws one line (throttled to ~10 redraws a second); elsewhere (CI logs)
it prints one line per finished trial and nothing per step. ``enabled=False`` is the quiet mode.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Progress over ``total`` trials, with an optional step counter for the running trial."""

    def __init__(self, total: int, *, enabled: bool = True, desc: str = "trials", stream: TextIO | None = None):
        self.total, self.enabled, self.desc = total, enabled, desc
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.best: float | None = None
        self.step_text = ""
        self._last = 0.0
        self._start = time.perf_counter()

    def set_done(self, done: int, best: float | None = None, note: str = "") -> None:
        """Record ``done`` finished trials (and the best value so far); redraw or log a line."""
        changed = done != self.done
        self.done, self.best = done, best if best is not None else self.best
        self.step_text = ""
        if not self.enabled:
            return
        if self.tty:
            self._draw(force=True)
        elif changed or note:
            print(self._line() + (f"  {note}" if note else ""), file=self.stream, flush=True)

    def step(self, trial: int, step: int, steps: int, loss: float) -> None:
        """Show the running trial's step and loss (terminal only)."""
        if not (self.enabled and self.tty):
            return
        self.step_text = f" | trial {trial} step {step + 1}/{steps} loss {loss:.4g}"
        self._draw()

    def close(self) -> None:
        if self.enabled and self.tty:
            self._draw(force=True)
            print(file=self.stream, flush=True)

    def _line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        best = f" best {self.best:.4g}" if self.best is not None else ""
        elapsed = time.perf_counter() - self._start
        return f"{self.desc} [{bar}] {self.done}/{self.total}{best} {elapsed:.0f}s"

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self.stream.write("\r" + (self._line() + self.step_text)[:150].ljust(100))
        self.stream.flush()
