"""The demo's --quick mode: the funnel story must come out of the numbers it prints."""
import io
import subprocess
import sys

import numpy as np
import pytest

from uturn.demo import run_demo
from uturn.models.eight_schools import EXACT_MEAN_LOG_TAU


@pytest.fixture(scope="module")
def quick_demo():
    stream = io.StringIO()
    rows = run_demo(quick=True, stream=stream)
    return rows, stream.getvalue()


def test_centered_runs_diverge_and_non_centered_matches_exact(quick_demo):
    rows, _ = quick_demo
    centered = [r for r in rows if r["centered"]]
    non_centered = [r for r in rows if not r["centered"]]
    assert all(r["divergences"] > 0 for r in centered)
    for r in non_centered:
        assert r["divergence_share"] < 0.01
        assert abs(r["mean_log_tau"] - EXACT_MEAN_LOG_TAU) < 4 * r["mcse_log_tau"]
        assert r["max_rhat"] < 1.01
    for r in rows:
        assert np.all(np.isfinite(r["fit"].unconstrained))


def test_printed_report_has_table_findings_and_verdict(quick_demo):
    rows, text = quick_demo
    assert text.count("\n| ") == len(rows) + 1  # header and one line per run
    assert "divergence" in text and "non-centered parametrization" in text
    assert "## Verdict" in text and f"{EXACT_MEAN_LOG_TAU:.5f}" in text
    for r in rows:
        assert f"{r['mean_log_tau']:.3f} +- {r['mcse_log_tau']:.3f}" in text


def test_command_line_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "uturn.demo", "--quick"], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    assert "Eight schools" in out and "Verdict" in out


def test_verdict_names_the_run_with_the_largest_share_of_divergences():
    from types import SimpleNamespace
    from uturn.demo import verdict

    def row(label, centered, divergences, draws, z):
        return dict(label=label, centered=centered, divergences=divergences,
                    divergence_share=divergences / draws, z=z, mean_log_tau=0.8 + z / 10,
                    fit=SimpleNamespace(settings={"target_accept": 0.8}))

    rows = [row("long run", True, 126, 11_000, 4.6), row("short run", True, 107, 4_000, 3.4),
            row("fixed", False, 1, 4_000, -1.0)]
    text = verdict(rows)
    assert "up to 2.7% of its transitions (short run)" in text
    assert "+3.4 MCSE" in text
