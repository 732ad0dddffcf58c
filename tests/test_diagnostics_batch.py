"""Tests of uturn.diagnostics.batch: the vectorised R-hat / ESS / MCSE table must give
what the per-quantity functions give, quantity by quantity, for every kind of input
(AR(1) chains, ties, discrete and constant draws, NaN and inf, one chain, odd and tiny
numbers of draws), and `checks` and `summary`, which use it, must report the same.

Equality is to 1e-12 relative: the table sums autocovariances and within-chain sums of
squares in another order than the per-quantity code (about 1e-15 apart); everything
else is the same arithmetic.
"""

import math
import threading
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

import uturn.diagnostics as diag
from uturn.diagnostics import batch
from uturn.diagnostics.batch import convergence_table

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
RTOL = 1e-12

KINDS = (
    "ar1",
    "rounded",
    "integers",
    "binary",
    "constant",
    "symmetric",
    "repeats",
    "nan",
    "inf",
    "zeros",
    "near_ties",
    "heavy",
    "tiny",
)


def ar1(rho, chains, draws, rng):
    noise = rng.standard_normal((chains, draws))
    noise[:, 0] /= math.sqrt(1.0 - rho**2)
    return lfilter([1.0], [1.0, -rho], noise, axis=1)


def make_quantity(kind, rho, chains, draws, rng):
    """Draws (chains, draws) of one quantity of the given kind."""
    x = ar1(rho, chains, draws, rng)
    if kind == "rounded":
        return np.round(2.0 * x) / 2.0  # ties, but many distinct values
    if kind == "integers":
        return np.round(x).astype(np.int64)
    if kind == "binary":
        return x > 0.5
    if kind == "constant":
        return np.full((chains, draws), 2.5)
    if kind == "symmetric":
        return np.where(x > 0, 1.0, -1.0)  # folded draws constant
    if kind == "repeats":
        # NUTS returns its starting point now and then: runs of repeated draws.
        repeat = rng.random((chains, draws)) < 0.3
        repeat[:, 0] = False
        index = np.where(repeat, 0, np.arange(draws))
        np.maximum.accumulate(index, axis=1, out=index)
        return np.take_along_axis(x, index, axis=1)
    if kind == "nan":
        x[rng.integers(chains), rng.integers(draws)] = np.nan
        return x
    if kind == "inf":
        x[rng.integers(chains), rng.integers(draws)] = -np.inf
        return x
    if kind == "zeros":
        return np.where(x > 0.3, 0.0, np.where(x < -0.3, -0.0, x))  # +0.0 ties -0.0
    if kind == "near_ties":
        # Distinct values a few ulp apart: their packed sort keys collide.
        return 1.0 + np.round(x * 5) * np.spacing(1.0)
    if kind == "heavy":
        return x / np.abs(rng.standard_normal((chains, draws))) ** 2  # Cauchy-like tails
    if kind == "tiny":
        return x * 1e-60  # smaller and the per-quantity mcse_sd underflows to 0/0
    return 1e3 + 10.0 * x


def expected(x):
    """The per-quantity functions (and numpy for the moments) on one quantity."""
    values = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        row = {
            "mean": values.mean(),
            "sd": values.std(ddof=1) if values.size > 1 else np.nan,
        }
        row.update(zip(("q5", "q50", "q95"), np.quantile(values, (0.05, 0.5, 0.95))))
    if not np.isfinite(values).all():
        row.update(dict.fromkeys(("r_hat", "ess_bulk", "ess_tail", "mcse_mean", "mcse_sd"), np.nan))
        row["finite"] = False
        return row
    row.update(
        r_hat=diag.rhat(values),
        ess_bulk=diag.ess_bulk(values),
        ess_tail=diag.ess_tail(values),
        mcse_mean=diag.mcse_mean(values),
        mcse_sd=diag.mcse_sd(values),
        finite=True,
    )
    return row


def assert_table_matches(draws, table):
    for j in range(draws.shape[2]):
        want = expected(draws[:, :, j])
        for name, value in want.items():
            got = table[name][j]
            if name == "finite":
                assert got == value, (j, name)
            else:
                np.testing.assert_allclose(
                    got, value, rtol=RTOL, atol=0, equal_nan=True, err_msg=f"quantity {j}, {name}"
                )


quantity_lists = st.lists(
    st.tuples(st.sampled_from(KINDS), st.floats(-0.9, 0.99), st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=6,
)


@PROPERTY_SETTINGS
@given(
    chains=st.integers(1, 4),
    draws=st.one_of(st.integers(1, 40), st.integers(41, 400), st.sampled_from([1000, 1001])),
    quantities=quantity_lists,
)
def test_table_equals_the_per_quantity_functions(chains, draws, quantities):
    columns = [
        np.asarray(make_quantity(kind, rho, chains, draws, np.random.default_rng(seed)), float)
        for kind, rho, seed in quantities
    ]
    x = np.stack(columns, axis=2)
    assert_table_matches(x, convergence_table(x, summary=True))
    plain = convergence_table(x)
    assert set(plain) == set(batch.CONVERGENCE_COLUMNS)
    for name in ("r_hat", "ess_bulk", "ess_tail"):
        np.testing.assert_array_equal(plain[name], convergence_table(x, summary=True)[name])


@pytest.mark.parametrize("draws", [8, 9, 10, 15, 16, 17, 100, 101])
def test_odd_and_tiny_numbers_of_draws(draws):
    """Below 8 draws per chain everything is NaN; odd draws lose the middle one."""
    rng = np.random.default_rng(draws)
    x = np.stack([ar1(rho, 3, draws, rng) for rho in (-0.5, 0.0, 0.5, 0.9)], axis=2)
    assert_table_matches(x, convergence_table(x, summary=True))
    short = convergence_table(x[:, :7], summary=True)
    assert np.isnan(short["r_hat"]).all() and np.isnan(short["ess_tail"]).all()
    assert np.isfinite(short["mean"]).all()


def test_many_quantities_in_several_blocks(monkeypatch):
    """Blocks of 3 quantities (the last one partial), and blocks spanning the arrays
    of several posterior quantities, give the same numbers as one block."""
    rng = np.random.default_rng(1)
    kinds = ["ar1", "repeats", "constant", "nan", "rounded", "near_ties", "ar1", "binary"]
    x = np.stack(
        [make_quantity(kind, 0.5, 4, 200, rng).astype(float) for kind in kinds], axis=2
    )
    whole = convergence_table(x, summary=True)
    monkeypatch.setattr(batch, "_BLOCK_VALUES", 3 * 4 * 200)
    for name, column in convergence_table(x, summary=True).items():
        np.testing.assert_array_equal(column, whole[name], err_msg=name)
    pieces = batch._table([x[:, :, :2], x[:, :, 2:3], x[:, :, 3:]], summary=True)
    for name, column in pieces.items():
        np.testing.assert_array_equal(column, whole[name], err_msg=name)


def test_threads_share_the_quantities_without_changing_the_numbers(monkeypatch):
    rng = np.random.default_rng(7)
    kinds = ["ar1", "repeats", "constant", "nan", "rounded", "near_ties", "binary"] * 3
    x = np.stack([make_quantity(kind, 0.6, 4, 100, rng).astype(float) for kind in kinds], axis=2)
    alone = convergence_table(x, summary=True)
    monkeypatch.setattr(batch, "_BLOCK_VALUES", 2 * 4 * 100)
    monkeypatch.setattr(batch, "_BLOCKS_PER_THREAD", 1)
    monkeypatch.setattr(batch, "_cpu_count", lambda: 4)
    threads = []
    original = batch._table_part
    monkeypatch.setattr(
        batch,
        "_table_part",
        lambda *args: threads.append(threading.get_ident()) or original(*args),
    )
    shared = convergence_table(x, summary=True)
    assert len(threads) == 4 and len(set(threads)) > 1  # four parts, on several threads
    for name, column in alone.items():
        np.testing.assert_array_equal(shared[name], column, err_msg=name)


def test_chains_each_constant_but_different():
    """Within-chain variance zero: R-hat is infinite, as the per-quantity functions say."""
    x = np.repeat(np.array([0.0, 1.0, 2.0, 3.0])[:, None], 50, axis=1)
    x = np.stack([x, x[::-1] * 0.1, np.where(np.arange(50) < 25, x, -x)], axis=2)
    table = convergence_table(x, summary=True)
    assert_table_matches(x, table)
    assert table["r_hat"][0] == math.inf


def test_long_chains_use_the_per_quantity_functions(monkeypatch):
    monkeypatch.setattr(batch, "_MAX_BATCH_VALUES", 100)
    rng = np.random.default_rng(2)
    x = np.stack([ar1(0.7, 2, 60, rng), np.ones((2, 60)), ar1(0.1, 2, 60, rng)], axis=2)
    x[0, 5, 2] = np.nan
    assert_table_matches(x, convergence_table(x, summary=True))


def test_packed_keys_of_near_equal_values_are_resorted_exactly():
    """Values within a few ulp share the high bits of their packed keys; the runs of
    such keys must be sorted by the exact values (in both the bulk and the fold)."""
    rng = np.random.default_rng(3)
    base = np.array([1.0, -1.0, -1e-3, 3.0])
    steps = rng.integers(-40, 40, (4, 100, 4))
    x = base + steps * np.spacing(np.abs(base))
    assert_table_matches(x, convergence_table(x, summary=True))


def test_geyer_flags_pair_sums_within_rounding_of_zero():
    """A pair sum at zero decides where the sum ends by its rounding: such quantities
    are left to `ess._ess_of_chains`."""
    n_draws, within, var_plus = 100, 1.0, 1.0 * 99 / 100  # chain means all zero
    rho = np.array([[1.0, 0.5, 0.3, -0.3 + 1e-13, -0.2, -0.1], [1.0, 0.5, 0.3, -0.1, -0.2, -0.1]])
    acov = within - (1.0 - rho) * var_plus
    acov[:, 0] = var_plus
    _, done, unsure = batch._geyer(acov, np.zeros((2, 4)), n_draws)
    assert done.all() and unsure.tolist() == [True, False]


def test_ess_of_exact_zero_pair_sums_is_the_per_quantity_answer(monkeypatch):
    """Short discrete chains with a Geyer pair sum that is zero in exact arithmetic:
    where rounding decides, the per-quantity function is asked."""
    calls = []

    def counted(chains):
        calls.append(chains.shape)
        return diag.ess._ess_of_chains(chains)

    monkeypatch.setattr(batch, "_ess_of_chains", counted)
    # Found by a search over random small-integer chains (about 1 in 1,000 has one).
    examples = [
        [
            [2, 2, 0, 1, 1, 2, 0, 1, 2, 2, 2, 2, 1, 2, 2],
            [0, 1, 2, 2, 0, 0, 0, 0, 0, 2, 2, 1, 0, 1, 0],
        ],
        [[1, 2, 0, 2, 2, 2, 0, 2, 2, 1, 2, 2, 2, 2], [1, 1, 1, 2, 0, 2, 2, 2, 2, 0, 0, 0, 0, 1]],
        [
            [0, 0, 0, 2, 0, 1, 0, 2, 1, 1, 0, 0],
            [1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 2],
            [1, 1, 1, 0, 0, 2, 2, 2, 1, 1, 1, 1],
        ],
    ]
    for example in examples:
        x = np.array(example, dtype=float)
        x = np.stack([x, 2.0 * x + 1.0, x[:, ::-1]], axis=2)
        assert_table_matches(x, convergence_table(x, summary=True))
    assert calls


def test_input_types_and_shapes():
    rng = np.random.default_rng(4)
    ints = rng.integers(0, 5, (4, 50, 3))
    np.testing.assert_array_equal(
        convergence_table(ints)["ess_bulk"], convergence_table(ints.astype(float))["ess_bulk"]
    )
    flags = rng.random((2, 50, 2)) < 0.4
    assert_table_matches(flags.astype(float), convergence_table(flags, summary=True))
    strided = rng.standard_normal((4, 60, 6))[:, ::2, ::3]  # not contiguous
    assert_table_matches(strided, convergence_table(strided, summary=True))
    empty = convergence_table(np.zeros((4, 100, 0)), summary=True)
    assert all(column.shape == (0,) for column in empty.values())
    no_draws = convergence_table(np.zeros((4, 0, 2)), summary=True)
    assert np.isnan(no_draws["mean"]).all() and np.isnan(no_draws["r_hat"]).all()
    with pytest.raises(ValueError, match="chains, draws, k"):
        convergence_table(np.zeros((4, 100)))
    with pytest.raises(ValueError, match="real numbers"):
        convergence_table(np.zeros((4, 100, 1), dtype=complex))
    x = rng.standard_normal((4, 100, 2))
    copy = x.copy()
    convergence_table(x, summary=True)
    np.testing.assert_array_equal(x, copy)


def test_results_do_not_depend_on_the_kept_buffers_or_threads():
    """The buffers kept between calls are reused (whatever the previous shapes) and
    not shared between threads running at once."""
    rng = np.random.default_rng(5)
    a = np.stack([ar1(0.3, 4, 300, rng) for _ in range(5)], axis=2)
    b = np.stack([ar1(0.8, 2, 101, rng) for _ in range(9)], axis=2)
    first = [convergence_table(a, summary=True), convergence_table(b)]
    batch._kept_arena = None
    second = [convergence_table(b), convergence_table(a, summary=True)][::-1]
    results = {}

    def run(name, x, summary):
        for _ in range(5):
            results[name] = convergence_table(x, summary=summary)

    threads = [
        threading.Thread(target=run, args=("a", a, True)),
        threading.Thread(target=run, args=("b", b, False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got in (second, [results["a"], results["b"]]):
        for want, table in zip(first, got):
            for name, column in want.items():
                np.testing.assert_array_equal(table[name], column, err_msg=name)


# --------------------------------------------------------------------------------------
# checks() and summary() on the table


def scalar_summary_row(values):
    row = expected(values)
    return [row[column] for column in diag.SUMMARY_COLUMNS]


def test_summary_and_checks_of_a_real_fit():
    import uturn
    from uturn.models import eight_schools

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the centred model's divergences are not the point
        fit = uturn.sample(
            eight_schools(centered=True), draws=500, tune=300, chains=4, seed=3, progress=False
        )
    table = diag.summary(fit)
    for name, array in fit.posterior.items():
        array = np.asarray(array)
        elements = [array] if array.ndim == 2 else [array[:, :, j] for j in range(array.shape[2])]
        labels = [name] if array.ndim == 2 else [f"{name}[{j}]" for j in range(array.shape[2])]
        for label, values in zip(labels, elements):
            want = expected(values)
            got = table.row(label)
            for column in diag.SUMMARY_COLUMNS:
                np.testing.assert_allclose(
                    got[column], want[column], rtol=RTOL, atol=0, err_msg=f"{label} {column}"
                )
    findings = {f.kind: f for f in diag.checks(fit, max_rhat=1.0, min_ess_per_chain=1e9)}
    r_hat = dict(zip(findings["rhat"].details["names"], findings["rhat"].details["r_hat"]))
    assert r_hat
    for label, value in r_hat.items():
        assert value == pytest.approx(table.row(label)["r_hat"], rel=RTOL)
    assert findings["ess"].details["names"] == table.names


def test_checks_report_the_same_quantities_as_the_per_quantity_functions():
    rng = np.random.default_rng(6)
    posterior = {
        "mu": ar1(0.2, 4, 400, rng),
        "stuck": ar1(0.99, 4, 400, rng) + np.arange(4)[:, None],
        "theta": np.stack([ar1(0.95, 4, 400, rng), ar1(0.0, 4, 400, rng)], axis=2),
        "bad": np.where(rng.random((4, 400, 2)) < 0.01, np.inf, 1.0),
        "empty": np.zeros((4, 400, 0)),
    }
    findings = {f.kind: f for f in diag.checks(SimpleNamespace(posterior=posterior))}
    labels = ["mu", "stuck", "theta[0]", "theta[1]", "bad[0]", "bad[1]"]
    columns = [posterior["mu"], posterior["stuck"]] + [
        posterior[name][:, :, j] for name in ("theta", "bad") for j in range(2)
    ]
    want = {label: expected(values) for label, values in zip(labels, columns)}
    high = [label for label in labels if want[label]["r_hat"] > 1.01]
    assert findings["rhat"].details["names"] == high
    np.testing.assert_allclose(
        findings["rhat"].details["r_hat"], [want[label]["r_hat"] for label in high], rtol=RTOL
    )
    low = [
        label
        for label in labels
        if want[label]["ess_bulk"] < 400 or want[label]["ess_tail"] < 400
    ]
    assert findings["ess"].details["names"] == low
    assert findings["nonfinite"].details["names"] == [
        label for label in labels if not want[label]["finite"]
    ]
    assert f"of {len(labels)} quantities" in findings["rhat"].message
