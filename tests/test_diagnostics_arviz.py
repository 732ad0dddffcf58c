"""Cross-check uturn.diagnostics against ArviZ on fixed arrays (skipped without ArviZ).

Both implement Vehtari et al. (2021) independently, so agreement to rounding error
checks the details (splitting, rank normalisation, Geyer truncation, the antithetic
term, the MCSE of quantiles). Known, deliberate differences are not compared:
``ess_sd`` and ``mcse_sd`` (ArviZ uses other definitions than posterior 1.5 / its
``mcse_sd`` fails under numpy 2.4), and constant indicators, for which ArviZ returns
the number of draws where posterior and uturn return NaN.
"""

import math
import warnings

import numpy as np
import pytest
from scipy.signal import lfilter

import uturn.diagnostics as diag

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ArviZ announces its refactor with a FutureWarning
    az = pytest.importorskip("arviz")

# The normal scores differ in the last digits: uturn mirrors the lower half of
# Phi^{-1}((r - 3/8)/(S + 1/4)) instead of evaluating Phi^{-1} near 1.
RTOL = 1e-8


def _ar1(rho, chains, draws, seed):
    noise = np.random.default_rng(seed).standard_normal((chains, draws))
    noise[:, 0] /= math.sqrt(1 - rho**2)
    return lfilter([1.0], [1.0, -rho], noise, axis=1)


def _value(result):
    return float(np.asarray(result).reshape(-1)[0])


ARRAYS = {
    "iid": np.random.default_rng(0).standard_normal((4, 1000)),
    "ar0.9": _ar1(0.9, 4, 1000, 1),
    "antithetic": _ar1(-0.6, 4, 1000, 2),
    "odd-draws": _ar1(0.5, 3, 777, 3),
    "one-chain": _ar1(0.3, 1, 2000, 4),
    "cauchy": np.random.default_rng(5).standard_cauchy((4, 500)),
    "shifted": np.random.default_rng(6).standard_normal((4, 500))
    + np.array([[0], [0], [0], [0.5]]),
    "ties": np.round(_ar1(0.5, 4, 600, 7) * 2) / 2,
}


@pytest.fixture(autouse=True)
def _quiet_arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_rhat_and_ess_agree_with_arviz(name):
    x = ARRAYS[name]
    if x.shape[0] > 1:  # ArviZ wants two chains for R-hat; uturn compares the halves of one
        assert diag.rhat(x) == pytest.approx(_value(az.rhat(x, method="rank")), rel=RTOL)
        assert diag.rhat_bulk(x) == pytest.approx(_value(az.rhat(x, method="z_scale")), rel=RTOL)
        assert diag.rhat_basic(x) == pytest.approx(_value(az.rhat(x, method="split")), rel=RTOL)
        assert diag.rhat_tail(x) == pytest.approx(_value(az.rhat(x, method="folded")), rel=RTOL)
    assert diag.ess_bulk(x) == pytest.approx(_value(az.ess(x, method="bulk")), rel=RTOL)
    assert diag.ess_mean(x) == pytest.approx(_value(az.ess(x, method="mean")), rel=RTOL)
    for q in (0.1, 0.5, 0.9):
        assert diag.ess_quantile(x, q) == pytest.approx(
            _value(az.ess(x, method="quantile", prob=q)), rel=RTOL
        )
    if name != "ties":  # a tied quantile can make an indicator constant (see module doc)
        assert diag.ess_tail(x) == pytest.approx(_value(az.ess(x, method="tail")), rel=RTOL)


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_mcse_agrees_with_arviz(name):
    x = ARRAYS[name]
    assert diag.mcse_mean(x) == pytest.approx(_value(az.mcse(x, method="mean")), rel=RTOL)
    for q in (0.05, 0.5, 0.95):
        assert diag.mcse_quantile(x, q) == pytest.approx(
            _value(az.mcse(x, method="quantile", prob=q)), rel=RTOL
        )


def test_ebfmi_agrees_with_arviz():
    energy = np.random.default_rng(9).standard_normal((4, 1000)).cumsum(
        axis=1
    ) * 0.05 + np.random.default_rng(10).standard_normal((4, 1000))
    np.testing.assert_allclose(diag.ebfmi(energy), az.bfmi(energy), rtol=1e-12)
