"""The benchmark harness measures what it says: medians, a child's memory, an honest page."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.harness import (
    QUICK_WORLD,
    Bench,
    MiB,
    Section,
    Target,
    Timing,
    run_measured,
    write_page,
)


def test_timing_is_the_median_with_min_and_max():
    timing = Timing.of([3.0, 1.0, 2.0, 10.0, 2.5])
    assert (timing.median, timing.low, timing.high, timing.runs) == (2.5, 1.0, 10.0, 5)


def test_peak_memory_counts_a_child_process():
    # the child holds 300 MiB for half a second: the sampled tree RSS must see it
    allocate = "import time; block = bytearray(300 * 1024 * 1024); time.sleep(0.5)"
    measured = run_measured([sys.executable, "-c", allocate])
    assert measured.peak >= 300 * MiB
    idle = run_measured([sys.executable, "-c", "import time; time.sleep(0.3)"])
    assert idle.peak < 100 * MiB


def test_a_failing_command_raises_with_its_output():
    with pytest.raises(RuntimeError, match="boom"):
        run_measured([sys.executable, "-c", "import sys; sys.exit('boom')"])


def test_the_page_lists_every_target_and_says_which_are_missed(tmp_path: Path):
    bench = Bench(world=QUICK_WORLD, home=tmp_path / "home", quick=True, plots_dir=tmp_path)
    sections = [
        Section(2, "Second", "| a |\n|---|\n| 1 |",
                targets=[Target("speed", "≥ 20×", "12×", False)]),
        Section(1, "First", "text", targets=[Target("quality", "AP ≥ 0.75", "0.80", True)]),
    ]
    page = tmp_path / "BENCHMARKS.md"
    write_page(page, sections, bench, started=datetime(2026, 12, 1), seconds=61)
    text = page.read_text()
    assert "2026-12-01" in text and "cores" in text and "400 customers" in text
    assert "| 2 | speed | ≥ 20× | 12× | **missed** |" in text
    assert "| 1 | quality | AP ≥ 0.75 | 0.80 | met |" in text
    assert text.index("## 1. First") < text.index("## 2. Second")


def test_every_benchmark_module_imports():
    """A benchmark names pipeline functions to profile: a renamed one broke `make bench-quick`
    at import (the ingestion section's de-duplication), found only by CI's last step."""
    import importlib

    from orchestration.settings import PROJECT_ROOT

    names = sorted(p.stem for p in (PROJECT_ROOT / "benchmarks").glob("*.py")
                   if p.stem != "__init__")
    assert "ingestion" in names
    for name in names:
        importlib.import_module(f"benchmarks.{name}")
