"""Speed of the convergence diagnostics: on long chains, and on many quantities.

    python benchmarks/diagnostics.py             # both sections below
    python benchmarks/diagnostics.py --long      # long chains only
    python benchmarks/diagnostics.py --many      # many quantities only
    python benchmarks/diagnostics.py --quick     # 2 repeats, many quantities up to 2,000
    python benchmarks/diagnostics.py --arviz     # also time ArviZ on the long chains
    python benchmarks/diagnostics.py --many --per-quantity  # also the per-quantity loop

Long chains (issue 4): rhat, ess_bulk, ess_tail and mcse_mean on a (4, 1,000,000) array
take well under a second together. Draws are a stationary AR(1) with coefficient 0.5
(ESS of the mean S/3) and, to show the slow path, 0.99 (Geyer's sum runs for hundreds
of lags, so the full-length FFT is needed).

Many quantities: ``checks()`` (which ``uturn.sample`` calls after every run) and
``summary()`` on 4 chains x 1,000 draws of k quantities: eight schools' 19 (mu, tau,
log_tau, theta[8], nu[8]), 2,000, and 200,000 (the hierarchical model with J = 100,000
has 200,005; that array alone is 6.4 GB, and ``--max-k`` lowers it). Draws are AR(1)
with coefficients spread over 0 to 0.9, with a few repeated draws (NUTS returns its
starting point now and then), so the tie handling and every stage of the
autocovariances are exercised. Goals: k = 19 in at most 3 ms, and a cost per quantity
far below the ~2 ms of the per-quantity functions (``--per-quantity`` times that loop).

Each figure is the minimum over the repeats: the machine is shared, and the minimum is
the least noisy estimate of the cost.
"""

import argparse
import math
import time
import warnings
from types import SimpleNamespace

import numpy as np
from scipy.signal import lfilter

import uturn.diagnostics as diag

FUNCTIONS = ("rhat", "ess_bulk", "ess_tail", "mcse_mean")


def ar1(rho, chains, draws, seed):
    noise = np.random.default_rng(seed).standard_normal((chains, draws))
    noise[:, 0] /= math.sqrt(1 - rho**2)
    return lfilter([1.0], [1.0, -rho], noise, axis=1)


def best_time(function, x, repeats):
    best, value = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function(x)
        best = min(best, time.perf_counter() - start)
    return best, value


def arviz_functions():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

    def value(result):
        return float(np.asarray(result).reshape(-1)[0])

    return {
        "rhat": lambda x: value(az.rhat(x, method="rank")),
        "ess_bulk": lambda x: value(az.ess(x, method="bulk")),
        "ess_tail": lambda x: value(az.ess(x, method="tail")),
        "mcse_mean": lambda x: value(az.mcse(x, method="mean")),
    }


def many_quantities(k, chains=4, draws=1000, seed=0):
    """(chains, draws, k) AR(1) draws, coefficients 0..0.9 across quantities, about 3%
    of draws repeated; built in place, a block of quantities at a time, so that
    k = 200,000 needs no memory beyond the result."""
    rng = np.random.default_rng(seed)
    x = np.empty((chains, draws, k))
    for start in range(0, k, 10_000):
        stop = min(start + 10_000, k)
        rho = np.linspace(0.0, 0.9, k)[start:stop]
        block = x[:, :, start:stop]
        block[:, 0] = rng.standard_normal((chains, stop - start)) / np.sqrt(1 - rho**2)
        for t in range(1, draws):
            block[:, t] = rho * block[:, t - 1] + rng.standard_normal((chains, stop - start))
            repeat = rng.random((chains, stop - start)) < 0.03
            block[:, t][repeat] = block[:, t - 1][repeat]
    return x


def eight_schools_like(chains=4, draws=1000):
    """A posterior with the shapes of eight schools' (19 scalar quantities)."""
    x = many_quantities(18, chains, draws, seed=1)
    return {
        "mu": x[:, :, 0],
        "tau": np.exp(x[:, :, 1]),
        "log_tau": x[:, :, 1],
        "theta": x[:, :, 2:10],
        "nu": x[:, :, 10:18],
    }


def per_quantity_checks(posterior):
    """What checks() computed before the table: the per-quantity functions, one scalar
    at a time (for comparison)."""
    for draws in posterior.values():
        draws = np.asarray(draws)
        for j in range(int(np.prod(draws.shape[2:]))):
            values = draws.reshape(draws.shape[0], draws.shape[1], -1)[:, :, j]
            diag.rhat(values), diag.ess_bulk(values), diag.ess_tail(values)


def time_many(args):
    repeats = 2 if args.quick else args.repeats
    max_k = min(args.max_k, 2000) if args.quick else args.max_k
    print(f"checks() and summary() on (4, 1,000, k) draws, best of {repeats}")
    print(
        f"{'k':>9} {'checks (s)':>11} {'us/quantity':>12} {'summary (s)':>12} "
        f"{'us/quantity':>12}"
    )
    sizes = [19] + [k for k in (2000, 200_000) if k <= max_k]
    if max_k not in sizes and max_k > 19:
        sizes.append(max_k)
    for k in sizes:
        posterior = eight_schools_like() if k == 19 else {"x": many_quantities(k)}
        fit = SimpleNamespace(posterior=posterior)
        n_repeats = repeats if k <= 2000 else 1
        checks_s, _ = best_time(diag.checks, fit, n_repeats)
        summary_s, _ = best_time(diag.summary, fit, n_repeats) if k <= 2000 else (math.nan, None)
        print(
            f"{k:>9,} {checks_s:>11.4f} {checks_s / k * 1e6:>12.1f} "
            f"{summary_s:>12.4f} {summary_s / k * 1e6:>12.1f}"
        )
        if args.per_quantity and k <= 2000:
            loop_s, _ = best_time(per_quantity_checks, posterior, 1)
            print(
                f"{'':>9} per-quantity functions: {loop_s:.4f} s, "
                f"{loop_s / k * 1e6:.0f} us/quantity"
            )
        del posterior, fit


def time_long(args):
    repeats = 2 if args.quick else args.repeats
    peers = {"uturn": {name: getattr(diag, name) for name in FUNCTIONS}}
    if args.arviz:
        try:
            peers["arviz"] = arviz_functions()
        except ImportError:
            print("arviz is not installed; timing uturn only")

    print(f"draws: ({args.chains}, {args.draws:,}), best of {repeats} (seconds)")
    header = (
        f"{'rho':>5}  {'library':8}"
        + "".join(f"{name:>11}" for name in FUNCTIONS)
        + f"{'total':>9}"
    )
    print(header)
    for rho in (0.5, 0.99):
        x = ar1(rho, args.chains, args.draws, seed=1)
        for library, functions in peers.items():
            times, values = [], []
            for name in FUNCTIONS:
                seconds, value = best_time(
                    functions[name], x, 1 if library == "arviz" else repeats
                )
                times.append(seconds)
                values.append(value)
            print(
                f"{rho:>5}  {library:8}"
                + "".join(f"{t:>11.3f}" for t in times)
                + f"{sum(times):>9.3f}"
            )
            print(f"{'':>5}  {'values':8}" + "".join(f"{v:>11.4g}" for v in values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--arviz", action="store_true", help="time ArviZ too (if installed)")
    parser.add_argument("--long", action="store_true", help="long chains only")
    parser.add_argument("--many", action="store_true", help="many quantities only")
    parser.add_argument("--max-k", type=int, default=200_000, help="most quantities timed")
    parser.add_argument(
        "--per-quantity", action="store_true", help="also time the per-quantity functions"
    )
    args = parser.parse_args()
    both = not (args.long or args.many)
    if args.long or both:
        time_long(args)
    if args.many or both:
        time_many(args)


if __name__ == "__main__":
    main()
