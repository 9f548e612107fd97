"""A one-line progress display on stderr (trials, and the steps of the running trial), drawn by tqdm.

On a terminal tqdm redraws one line, at most every 0.1 s. Elsewhere (CI logs, files) a redraw
would pile ``\\r``-separated meters onto one line, so each draw is written as a line of its own
instead, at most one every 5 s (``mininterval``), plus the final state on :meth:`Progress.close`.
``enabled=False`` is the quiet mode: nothing is printed and no tqdm bar is made.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress"]

#: Seconds between draws (tqdm's ``mininterval``): on a terminal, and in a log (one line each).
TTY_INTERVAL = 0.1
LOG_INTERVAL = 5.0


class _LogLines:
    """A file for tqdm off a terminal: each draw becomes one whole line.

    tqdm redraws by writing ``"\\r" + meter + padding``; here the ``\\r`` and the padding are
    dropped and a newline added. A draw identical to the previous line (close() repeats the
    last one) and tqdm's bare newlines are skipped.
    """

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    """Progress over ``total`` trials (or other units), with an optional step counter for the running trial.

    Call :meth:`close` at the end, or use it as a context manager (``with Progress(n) as p:``).

    Args:
        total: number of trials (the bar's length).
        enabled: False prints nothing at all (quiet mode, ``quiet=True`` in tune/run).
        desc: the label at the start of the line. Default ``"trials"``.
        stream: where to write. Default ``sys.stderr``.
        mininterval: seconds between draws. Default 0.1 on a terminal, 5 elsewhere.
        unit: what ``total`` counts, for the rate (``"trial"``/s). Default ``"trial"``.
    """

    def __init__(self, total: int, *, enabled: bool = True, desc: str = "trials", stream: TextIO | None = None,
                 mininterval: float | None = None, unit: str = "trial"):
        self.total, self.enabled, self.desc = total, enabled, desc
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.best: float | None = None
        self.step_text = ""
        self.note = ""
        self._bar: tqdm | None = None
        if enabled:
            interval = mininterval if mininterval is not None else TTY_INTERVAL if self.tty else LOG_INTERVAL
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=self.stream if self.tty else _LogLines(self.stream),
                mininterval=interval,
                miniters=0,  # draw on time alone: a step() changes the text, not the count
                dynamic_ncols=self.tty, ascii=not self.tty, leave=True,
                smoothing=0,  # rate and ETA from the whole run: trials vary too much for a moving average
            )

    def set_done(self, done: int, best: float | None = None, note: str = "") -> None:
        """Record ``done`` finished trials, the best value so far and a note on the last trial
        (e.g. ``"trial 3: complete loss 0.91"``); drawn when ``mininterval`` has passed."""
        self.done, self.best = done, best if best is not None else self.best
        self.step_text, self.note = "", note
        self._update()

    def step(self, trial: int, step: int, steps: int, loss: float) -> None:
        """Show the running trial's step (0-based ``step`` of ``steps``) and its loss."""
        self.step_text = f"trial {trial} step {step + 1}/{steps} loss {loss:.4g}"
        self._update()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Draw the final state and end the line. Safe to call twice."""
        if self._bar is not None:
            self._update()
            self._bar.close()  # draws the last state whatever mininterval says, then ends the line
            self._bar = None

    def _update(self) -> None:
        if self._bar is None:
            return
        parts = [f"best {self.best:.4g}" if self.best is not None else "", self.step_text or self.note]
        self._bar.set_postfix_str(" | ".join(p for p in parts if p), refresh=False)
        self._bar.update(self.done - self._bar.n)  # 0 when only the text changed; tqdm throttles the draw
