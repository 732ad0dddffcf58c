"""Smoke test of the peer benchmark harness (benchmarks/compare.py) with uturn alone.

No peer needs to be installed: a peer that is missing must be reported as skipped,
not crash the run. The whole file takes about 10-15 s (two worker processes, two
fresh first-call processes and the exact posterior at J = 1,000).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:     # benchmarks/ is not installed; it lives beside uturn/
    sys.path.insert(0, str(REPO))

from benchmarks import compare, peers, report, workloads  # noqa: E402


def _cells(markdown, first_cell):
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one row for {first_cell!r} in:\n{markdown}"
    return [cell.strip() for cell in rows[0].strip().strip("|").split("|")]


def _number(cell):
    return float(cell.split()[0].replace(",", "").rstrip("×"))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run: uturn, and Stan declared missing whatever is installed."""
    out = tmp_path_factory.mktemp("compare")
    missing = peers.missing_packages
    compare.peers.missing_packages = lambda name: ["stan"] if name == "stan" else missing(name)
    try:
        result = compare.main(["--quick", "--samplers", "uturn,stan", "--first-call", "all",
                               "--out", str(out)])
    finally:
        compare.peers.missing_packages = missing
    return result, out


def test_quick_run_writes_the_report_with_the_expected_rows(quick_run):
    result, out = quick_run
    markdown = (out / "RESULTS.md").read_text()
    assert markdown.startswith(result["markdown"][:200])
    for heading in ("# uturn against its peers", "### eight_schools_nc", "## Goals (issue 6)",
                    "## Notes"):
        assert heading in markdown
    for header in ("- Command: `python -m benchmarks.compare --quick", "- Machine: ",
                   "- Versions: python ", "- Date: "):
        assert header in markdown

    cells = _cells(markdown, "uturn")
    assert len(cells) == len(report.COLUMNS)
    columns = dict(zip([c.format(q="log_tau") for c in report.COLUMNS], cells))
    assert 0 < _number(columns["first call (s)"]) < 60
    assert 0 < _number(columns["sampling time (s): median (min–max)"]) < 10
    assert _number(columns["ESS_bulk log_tau"]) > 20
    assert _number(columns["ESS_bulk/s"]) > 0
    assert _number(columns["time / own limit"]) >= 1.0     # nothing beats bare gradients
    assert len(columns["divergences"].split(",")) == 2     # one per repeat
    assert all(abs(float(z)) < 6 for z in columns["E[log_tau] error (MCSE)"].split(","))

    limit = _cells(markdown, "**physical limit**")
    assert limit[-4] == "1.0×"
    assert "stan: skipped: not installed (stan)" in markdown
    assert "First call (the fastest of several fresh processes" in markdown
    assert "- uturn: " in markdown and " s (fastest of 3: " in markdown
    assert "ArviZ" in markdown


def test_numba_floor_is_timed_beside_the_first_call(quick_run):
    result, out = quick_run
    measured = result["workloads"]["eight_schools_nc"]
    floor = measured["numba_floor"]
    first = measured["results"]["uturn"].first_call["seconds"]
    # uturn's first call compiles a model and runs a sampler on top of what the floor
    # process does, so it cannot be much faster (1.5x allows for the machine's noise).
    assert 0 < floor < 1.5 * first
    markdown = (out / "RESULTS.md").read_text()
    assert f"- numba alone: {floor:.2f} s" in markdown
    assert f"(numba alone: {floor:.2f} s)" in markdown        # in the first-call goal


def test_adaptation_study_measures_a_peer_as_it_measures_uturn():
    # The uturn peer module run through the peers' path must give the numbers that the
    # direct path gives for the same sampler and seed: same draws, same ESS, same counts.
    from benchmarks import adaptation
    workload = workloads.get("eight_schools_nc")
    config = peers.RunConfig(chains=2, tune=200, draws=200, cores=1)
    peer = peers.load("uturn")
    state = peer.build(workload, config)
    model, quantity = adaptation.build_model("eight_schools_nc")
    direct = adaptation.measure(model, quantity, "diag", 5, 200, 200, 2, 1)
    via_peer = adaptation.measure_peer(peer, state, workload, 5)
    for key in ("ess_q", "ess_min", "grads_total", "divergences", "mean_q", "step_size",
                "acceptance"):
        assert via_peer[key] == pytest.approx(direct[key], rel=1e-12), key
    # Dual averaging steers the acceptance statistic towards target_accept (0.8).
    assert 0.6 < direct["acceptance"] < 1.0
    assert "mean" in adaptation._cell([70.0, 80.0, 90.0], "ess_q")
    assert adaptation._cell([np.nan, np.nan], "acceptance") == "–"    # a peer without it
    assert adaptation._cell([0.8, 0.9], "acceptance").endswith("mean 0.8500 ± 0.0500")


def test_adaptation_study_reports_the_bias_over_seeds_in_standard_errors():
    from benchmarks import adaptation
    # Four seeds' means around 1.0: the cell gives their mean, its standard error and
    # how many of those the mean lies from the exact value.
    values = [1.0 + d for d in (-0.1, 0.0, 0.0, 0.1)]
    se = np.std(values, ddof=1) / 2
    cell = adaptation._cell(values, "mean_q", exact=1.0 - 4 * se)
    assert cell == f"1.000 ± {se:.3f} (+4.0)"
    assert adaptation._cell([0.5], "mean_q", exact=0.8) == "0.500"
    assert adaptation._exact_mean("eight_schools_c") == pytest.approx(0.8021392108, abs=1e-9)


def test_quick_run_returns_numbers_from_uturn_diagnostics(quick_run):
    result, _ = quick_run
    measured = result["workloads"]["eight_schools_nc"]
    runs = measured["results"]["uturn"].runs
    assert len(runs) == 2
    for run in runs:
        assert run["gradients_sampling"] > 0 and run["gradients_warmup"] > 0
        assert run["gradients_extra"] >= 0            # uturn's step-size searches
        assert run["min_ess_bulk"] <= run["ess_bulk"]
        if run["arviz_ess_bulk"] is not None:
            assert run["arviz_ess_bulk"] == pytest.approx(run["ess_bulk"], rel=1e-6)
    assert measured["gradient_ns"] > 0
    assert measured["exact"] == workloads.get("eight_schools_nc").exact_mean()
    assert measured["results"]["stan"].runs == []


def test_quick_run_draws_the_chart(quick_run):
    pytest.importorskip("matplotlib")
    result, out = quick_run
    assert (out / "ess_per_second.png").stat().st_size > 1000
    assert "ess_per_second.png" in (out / "RESULTS.md").read_text()


def test_script_entry_point_runs():
    # ``python benchmarks/compare.py`` must find the package from the script's directory.
    done = subprocess.run([sys.executable, "benchmarks/compare.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--samplers" in done.stdout


def test_exact_mean_log_tau_agrees_with_exact_posterior():
    from uturn.models import exact_posterior
    y, sigma = workloads.simulated_groups(1000, seed=0)
    reference = exact_posterior(y, sigma)["posterior"]["log_tau"]["mean"]
    assert workloads.exact_mean_log_tau(y, sigma) == pytest.approx(reference, abs=1e-8)
    eight = workloads.get("eight_schools_nc")
    assert workloads.exact_mean_log_tau(eight.y, eight.sigma) == pytest.approx(
        0.8021392107784913, abs=1e-8)


def test_workloads_put_every_sampler_in_uturns_coordinates():
    large = workloads.get("hier_nc_100000")
    assert large.dim == 100_002 and not large.all_monitored
    assert large.monitored[:2].tolist() == [0, 1] and large.monitored.size == 1002
    names = large.coordinate_names()
    assert names[:3] == ["mu", "log_tau", "nu[0]"] and names[-1] == "nu[99999]"
    centered = workloads.get("eight_schools_c")
    assert centered.coordinate_names()[2] == "theta[0]"
    rng = np.random.default_rng(0)
    mu, log_tau = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    group = rng.normal(size=(2, 3, 8))
    selected = centered.select(mu=mu, log_tau=log_tau, group=group)
    assert selected.shape == (2, 3, 10)
    np.testing.assert_array_equal(selected[..., 1], log_tau)
    np.testing.assert_array_equal(selected[..., 2:], group)


def test_first_call_keeps_the_fastest_attempt_and_lists_them_all():
    from benchmarks.compare import best_first_call
    slow = {"seconds": 1.2, "build_seconds": 0.9, "sample_seconds": 0.1}
    fast = {"seconds": 0.8, "build_seconds": 0.6, "sample_seconds": 0.1}
    failed = {"skipped": "first-call process failed"}
    kept = best_first_call(None, slow)
    kept = best_first_call(kept, failed)
    kept = best_first_call(kept, fast)
    assert kept["seconds"] == 0.8 and kept["build_seconds"] == 0.6
    assert kept["all"] == [1.2, 0.8]
    assert "skipped" in best_first_call(None, failed)


def test_nutpie_timed_from_its_raw_trace_gives_the_draws_of_its_stock_call():
    # The nutpie row is timed with return_raw_trace=True (no ArviZ conversion): that
    # must read the very draws, step counts and divergences a stock call returns.
    # Needs the bench extra; skipped where nutpie is not installed.
    pytest.importorskip("nutpie")
    pytest.importorskip("pymc")
    nutpie = peers.load("nutpie")
    for name in ("eight_schools_nc", "gaussian_dense_100"):
        workload = workloads.get(name)
        state = nutpie.build(workload, peers.RunConfig(chains=2, tune=100, draws=100, cores=1))
        raw = nutpie.run(state, 3)
        stock = nutpie.run_stock(state, 3)
        assert raw.draws.shape == (2, 100, workload.monitored.size)
        np.testing.assert_array_equal(raw.draws, stock.draws)
        np.testing.assert_array_equal(raw.n_steps, stock.n_steps)
        np.testing.assert_array_equal(raw.diverging, stock.diverging)
        np.testing.assert_array_equal(raw.warmup_n_steps, stock.warmup_n_steps)


def test_memory_monitor_counts_a_child_that_lives_through_the_block():
    """PyStan and PyMC sample in child processes: the monitor must add their memory
    even though it reads the children only every half second."""
    pytest.importorskip("psutil")   # without it only the worker's ru_maxrss is known
    from benchmarks.harness import MemoryMonitor
    child_mb = 200
    code = (f"import time; block = bytearray({child_mb} << 20); "
            "block[::4096] = b'x' * len(block[::4096]); time.sleep(1.5)")
    with MemoryMonitor() as before:
        pass
    with MemoryMonitor() as memory:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert memory.peak - before.peak > 0.8 * child_mb * 2 ** 20
