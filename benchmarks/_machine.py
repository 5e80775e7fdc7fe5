"""The CPU's model name for the machine line every benchmark prints first."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """``model name`` from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"
