"""``backends.tune_allocator``: glibc keeps freed memory, so new arrays start on touched pages."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from geomp_ref.backends import _allocator, tune_allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Eight 1 MiB arrays alive at once, written, then freed: 8 MiB of free heap top, above glibc's
# default trim threshold, so without tuning those pages go back to the kernel and the next round
# faults on every page again (256 per MiB); with tuning they stay and the next round reuses them.
_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from geomp_ref.backends import tune_allocator
    if sys.argv[1] == "1":
        assert tune_allocator() is True
    def faults():
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        arrays = [np.empty(1 << 17) for _ in range(8)]
        for a in arrays:
            a.fill(1.0)
        f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        del arrays
        return f1 - f0
    for _ in range(3):
        faults()
    print(min(faults() for _ in range(5)))
""")


def _faults(tuned: bool) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if tuned else "0"], check=True,
                         capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_tuned_process_reuses_freed_pages():
    untuned, tuned = _faults(False), _faults(True)
    assert untuned >= 8 * 256 // 2, untuned  # the default allocator re-faults most pages
    assert tuned < 8 * 256 // 8, tuned  # the tuned one reuses them


def test_no_glibc_changes_nothing(monkeypatch):
    monkeypatch.setattr(_allocator, "_mallopt", lambda: None)
    assert tune_allocator() is False


def test_refused_setting_reports_false(monkeypatch):
    calls = []

    def refuse(param, value):
        calls.append((param, value))
        return 0

    monkeypatch.setattr(_allocator, "_mallopt", lambda: refuse)
    assert tune_allocator(trim_threshold=1 << 20, mmap_threshold=1 << 20) is False
    assert calls == [(_allocator._M_TRIM_THRESHOLD, 1 << 20),
                     (_allocator._M_MMAP_THRESHOLD, 1 << 20)]


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"trim_threshold": 1.5e6}, TypeError, "trim_threshold"),
    ({"trim_threshold": -1}, ValueError, "trim_threshold"),
    ({"mmap_threshold": "big"}, TypeError, "mmap_threshold"),
    ({"mmap_threshold": (32 << 20) + 1}, ValueError, "mmap_threshold"),
    ({"mmap_threshold": True}, TypeError, "mmap_threshold"),
])
def test_bad_thresholds_name_the_argument(kwargs, exc, words, monkeypatch):
    monkeypatch.setattr(_allocator, "_mallopt", lambda: pytest.fail("must validate first"))
    with pytest.raises(exc, match=words):
        tune_allocator(**kwargs)


def test_positional_arguments_refused():
    with pytest.raises(TypeError):
        tune_allocator(1 << 20)  # the thresholds are keyword-only
