"""Progress bars for long runs, on stderr (stdout stays the command's output: generated text, tables).

One tqdm configuration for every long loop: RTL runs, compiles with GPTQ/mixed precision, calibration,
quant-report rows, training, `dfx run` at large sizes. A bar is drawn when stderr is a terminal, or always with
DFX_PROGRESS=1 (logs, tests); DFX_PROGRESS=0 turns bars off. It appears only once a loop has run for
`DELAY_S` seconds, so short commands print nothing extra (DFX_PROGRESS=1 shows it at once).
"""
from __future__ import annotations

import os
import sys
import threading

from tqdm import tqdm

DELAY_S = 2.0


def mode() -> str:
    """'on' (DFX_PROGRESS=1), 'off' (DFX_PROGRESS=0, or stderr not a terminal) or 'tty'."""
    env = os.environ.get("DFX_PROGRESS", "").strip()
    if env == "1":
        return "on"
    if env == "0":
        return "off"
    try:
        return "tty" if sys.stderr.isatty() else "off"
    except (AttributeError, ValueError):
        return "off"


def bar(desc: str, total: int | None = None, unit: str = "it", leave: bool = True, **kw) -> tqdm:
    """A tqdm bar on stderr (disabled per `mode`); use it as tqdm: update(n), set_postfix_str(s), close()."""
    m = mode()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=leave, disable=m == "off",
                delay=0.0 if m == "on" else DELAY_S, mininterval=0.5, dynamic_ncols=m == "tty",
                ncols=None if m == "tty" else 100, **kw)


def track(iterable, desc: str, total: int | None = None, unit: str = "it", leave: bool = True):
    """`iterable` with a bar (see `bar`)."""
    b = bar(desc, total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None),
            unit, leave)
    try:
        for x in iterable:
            yield x
            b.update(1)
    finally:
        b.close()


class StepBar:
    """Token steps of a generation: steps done of `total`, the kernel's simulated cycles per wall second, and
    tqdm's ETA. Call it with each run's token count and kernel cycles; after `close` further calls are ignored
    (a bar closed before streamed text starts)."""

    def __init__(self, desc: str, total: int, leave: bool = False):
        self.bar = bar(desc, total, "tok", leave)
        self.cycles, self.closed = 0, False
        self._first = None                 # (elapsed, cycles) at the first step: the rate leaves out start-up

    def __call__(self, count: int = 1, cycles: int = 0) -> None:
        if self.closed:
            return
        self.cycles += int(cycles)
        elapsed = self.bar.format_dict["elapsed"]
        if self._first is None:
            self._first = (elapsed, self.cycles)
            t, c = elapsed, self.cycles                # one step so far: its cycles over the time until it ended
        else:
            t, c = elapsed - self._first[0], self.cycles - self._first[1]
        if c and t > 0:
            self.bar.set_postfix_str(f"{c / t:,.0f} cycles/s", refresh=False)
        self.bar.update(int(count))

    def run(self, rec) -> None:
        """A Session.on_step hook: one RunRecord (host.device.RunRecord)."""
        self(rec.count, rec.max_cycles)

    def describe(self, desc: str) -> None:
        if not self.closed:
            self.bar.set_description_str(desc)

    def refresh(self) -> None:
        if not self.closed:
            self.bar.refresh()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bar.close()


class Ticking:
    """A bar for one long step whose progress cannot be counted (Verilog generation, a Yosys run): the elapsed time,
    refreshed every second by a thread, on stderr per `mode`.

        with Ticking("verilog: dfx_core"):
            text = convert(...)
    """

    def __init__(self, desc: str):
        self.desc = desc
        self._stop = threading.Event()

    def __enter__(self):
        self.bar = bar(self.desc, None, "s", leave=False, bar_format="{desc}: {elapsed} elapsed")
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def _tick(self):
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.bar.close()
        return False
