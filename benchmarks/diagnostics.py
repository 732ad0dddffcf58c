"""Speed of the convergence diagnostics on long chains.

    python benchmarks/diagnostics.py             # 4 x 1,000,000 draws, 5 repeats
    python benchmarks/diagnostics.py --quick     # 2 repeats
    python benchmarks/diagnostics.py --arviz     # also time ArviZ on the same array

Goal (issue 4): rhat, ess_bulk, ess_tail and mcse_mean on a (4, 1,000,000) array take
well under a second together. Draws are a stationary AR(1) with coefficient 0.5 (ESS of
the mean S/3) and, to show the slow path, 0.99 (Geyer's sum runs for hundreds of lags,
so the full-length FFT is needed). Each figure is the minimum over the repeats: the
machine is shared, and the minimum is the least noisy estimate of the cost.
"""

import argparse
import math
import time
import warnings

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--arviz", action="store_true", help="time ArviZ too (if installed)")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
