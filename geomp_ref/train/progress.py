"""A dependency-free progress display on stderr for long loops (data generation, training).

On a terminal the line is redrawn in place; otherwise (a log file, a pipe) a full line is printed
at most every ``log_interval`` seconds, so logs stay short.
"""

from __future__ import annotations

import math
import sys
import time

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress of ``total`` units of work, shown as a bar with elapsed time and estimate.

    Parameters
    ----------
    total : float
        Units of work (simulations, batches, ...); must be > 0 for a percentage to show.
    label : str
        Printed before the bar.
    unit : str
        Name of a unit, printed after the counts.
    stream : file-like, optional
        Default ``sys.stderr``; ``None`` or ``enabled=False`` makes every call a no-op.
    enabled : bool
    log_interval : float
        Seconds between lines when the stream is not a terminal.
    """

    def __init__(self, total: float, label: str = "", unit: str = "", *, stream=None,
                 enabled: bool = True, log_interval: float = 10.0):
        self.total = float(total)
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.log_interval = float(log_interval)
        self.done = 0.0
        self.note = ""
        self.start = time.perf_counter()
        self._last = -float("inf")
        isatty = getattr(self.stream, "isatty", None)
        self._tty = bool(isatty()) if callable(isatty) else False

    def update(self, amount: float = 1.0, note: str | None = None, *, force: bool = False) -> None:
        """Add ``amount`` units; redraw if enough time passed (or ``force``)."""
        self.done += amount
        if note is not None:
            self.note = note
        if not self.enabled:
            return
        now = time.perf_counter()
        interval = 0.2 if self._tty else self.log_interval
        if force or now - self._last >= interval:
            self._last = now
            self._draw(now)

    def _draw(self, now: float, end: str = "") -> None:
        elapsed = now - self.start
        frac = min(self.done / self.total, 1.0) if self.total > 0 else 0.0
        width = 24
        filled = int(frac * width)
        bar = "#" * filled + "." * (width - filled)
        eta = elapsed * (1.0 / frac - 1.0) if frac > 0 else float("nan")
        eta_text = _clock(eta) if math.isfinite(eta) else "--:--"
        line = (f"{self.label} [{bar}] {100 * frac:5.1f}% {self.done:.0f}/{self.total:.0f}"
                f"{' ' + self.unit if self.unit else ''} {_clock(elapsed)} < {eta_text}"
                f"{' ' + self.note if self.note else ''}")
        if self._tty:
            self.stream.write("\r" + line + "\x1b[K" + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> float:
        """Draw the final state and end the line; returns the elapsed seconds."""
        now = time.perf_counter()
        if self.enabled:
            self._draw(now, end="\n")
        return now - self.start
