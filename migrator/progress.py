"""Progress lines on stderr every few seconds: phase, rows, rate, estimate and ETA (§12.3).

Only counts and names are logged, never row contents.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("syn2mas.migrator")


class Progress:
    """Counts rows of the current phase and logs a line at most every ``interval`` seconds."""

    def __init__(self, interval: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 emit: Callable[[str], None] | None = None):
        self.interval = interval
        self.clock = clock
        self.emit = emit or log.info
        self.phase_name = ""
        self.estimate = 0
        self.rows = 0
        self._phase_start = clock()
        self._last = self._phase_start
        # When the phase's first rows came, and how many: the rate is measured from then, because a
        # query that sorts (phase 4) sends nothing for a while and the ETA would otherwise start huge.
        self._first_at: float | None = None
        self._first_rows = 0

    def phase(self, name: str, estimate: int, note: str = "") -> None:
        """Start a phase and say so; ``estimate`` is the approximate number of rows (0 when unknown),
        ``note`` what to expect before its first rows."""
        if self.phase_name:
            self.done()
        self.phase_name, self.estimate, self.rows = name, estimate, 0
        self._phase_start = self._last = self.clock()
        self._first_at, self._first_rows = None, 0
        self.emit(f"{name}: started" + (f", ~{estimate} rows" if estimate > 0 else "") + (f"; {note}" if note else ""))

    def tick(self, n: int = 1) -> None:
        """Count ``n`` rows; log when the interval has passed."""
        self.rows += n
        if self._first_at is None:
            self._first_at, self._first_rows = self.clock(), self.rows
            return
        if self.rows % 1024 == 0 or n > 1:
            now = self.clock()
            if now - self._last >= self.interval:
                self._last = now
                self.emit(self.line(now))

    def line(self, now: float) -> str:
        """The progress line for the current phase."""
        first_at = self._first_at if self._first_at is not None else self._phase_start
        rate = (self.rows - self._first_rows) / max(now - first_at, 1e-9)
        text = f"{self.phase_name}: {self.rows} rows read, {rate:,.0f} rows/s"
        if self.estimate > 0:
            pct = min(100.0, 100.0 * self.rows / self.estimate)
            remaining = max(self.estimate - self.rows, 0) / rate if rate > 0 else 0
            text += f", ~{pct:.0f}% of ~{self.estimate}, ETA {int(remaining) // 60}:{int(remaining) % 60:02d}"
        return text

    def done(self) -> None:
        """Log the summary of the finished phase."""
        elapsed = self.clock() - self._phase_start
        self.emit(f"{self.phase_name}: done, {self.rows} rows in {elapsed:.1f} s")
        self.phase_name = ""

    def step(self, text: str) -> None:
        """Log a one-off step (an index or constraint being rebuilt)."""
        self.emit(text)
