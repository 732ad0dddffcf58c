"""Cost of the hand-coded models: one log density + gradient call, model build time,
and the exact posterior.

    python benchmarks/models.py            # everything (about half a minute)
    python benchmarks/models.py --quick    # fewer repeats, no fresh-process timings

Prints, for the hierarchical normal model with J = 8, 1,000 and 100,000 groups in both
parametrizations (and Neal's funnel), the nanoseconds per ``logp_grad`` call, the same
per group (flat if the cost is linear in J) and gradient evaluations per second. Calls
go through the first-class function type the sampler uses, from a compiled loop, so no
Python overhead is counted. Each figure is the best of several repeats (the machine
is shared, so the minimum is the least noisy estimate).
"""
import argparse
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from numba import njit, types

from uturn.model import LOGP_GRAD_TYPE
from uturn.models import exact_posterior, funnel, hierarchical_normal
from uturn.models.eight_schools import SIGMA, Y

REPO = Path(__file__).resolve().parents[1]


@njit(types.float64(LOGP_GRAD_TYPE, types.float64[::1], types.float64[::1], types.int64),
      cache=True, nogil=True)
def _call_loop(logp_grad, x, grad, n_calls):
    """Call ``logp_grad`` n times; the nudge to x makes every call depend on the last."""
    total = 0.0
    for i in range(n_calls):
        x[i % x.shape[0]] += 1e-12
        total += logp_grad(x, grad)
    return total


def ns_per_call(model, x, repeats):
    grad = np.empty(model.dim)
    x = x.copy()
    n_calls = max(200, int(3e7 / model.dim))   # ~0.1 s per repeat whatever the size
    _call_loop(model.logp_grad, x, grad, 10)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        _call_loop(model.logp_grad, x, grad, n_calls)
        best = min(best, (time.perf_counter() - start) / n_calls)
    return best * 1e9


def simulated_groups(n_groups, seed=0):
    """Data like eight schools: tau = 5, sigma between 5 and 20."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(5.0, 20.0, size=n_groups)
    y = 5.0 + 5.0 * rng.normal(size=n_groups) + sigma * rng.normal(size=n_groups)
    return y, sigma


def gradient_table(repeats):
    print("logp_grad cost (best of %d; called through LOGP_GRAD_TYPE from a compiled loop)"
          % repeats)
    print(f"{'model':<28}{'J':>9}{'ns/call':>14}{'ns/group':>11}{'grad evals/s':>15}")
    rng = np.random.default_rng(1)
    for n_groups in (8, 1_000, 100_000):
        y, sigma = (Y, SIGMA) if n_groups == 8 else simulated_groups(n_groups)
        for centered in (True, False):
            model = hierarchical_normal(y, sigma, centered=centered)
            group = rng.normal(5, 5, size=n_groups) if centered else rng.normal(size=n_groups)
            x = np.concatenate([[4.0, 1.0], group])
            ns = ns_per_call(model, x, repeats)
            label = "hierarchical " + ("centered" if centered else "non-centered")
            print(f"{label:<28}{n_groups:>9,}{ns:>14,.1f}{ns / n_groups:>11.2f}"
                  f"{1e9 / ns:>15,.0f}")
    for dim in (10, 1_000):
        model = funnel(dim)
        ns = ns_per_call(model, rng.normal(size=dim), repeats)
        print(f"{'funnel (dim)':<28}{dim:>9,}{ns:>14,.1f}{ns / dim:>11.2f}{1e9 / ns:>15,.0f}")


def fresh_process_build_times():
    """Import + build + first call in a new Python process (the kernels come from
    numba's disk cache; the per-model wrapper is compiled)."""
    script = textwrap.dedent("""
        import sys, time
        start = time.perf_counter()
        import numpy as np
        from uturn.models import hierarchical_normal
        imported = time.perf_counter()
        n_groups = int(sys.argv[1])
        rng = np.random.default_rng(0)
        y, sigma = rng.normal(size=n_groups), rng.uniform(1, 2, size=n_groups)
        times = []
        for centered in (True, False):
            t0 = time.perf_counter()
            model = hierarchical_normal(y, sigma, centered=centered)
            model.logp_and_grad(np.zeros(n_groups + 2))
            times.append(time.perf_counter() - t0)
        print(f"{imported - start:.2f} {times[0]:.3f} {times[1]:.3f}")
    """)
    print("\nfresh process: import uturn.models, then build + first call of a model")
    print(f"{'J':>9}{'import s':>10}{'1st model s':>13}{'2nd model s':>13}")
    for n_groups in (8, 100_000):
        best = None
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", script, str(n_groups)], cwd=REPO,
                                 capture_output=True, text=True, check=True,
                                 env={"PYTHONPATH": str(REPO), "PATH": ""}).stdout.split()
            values = [float(v) for v in out]
            best = values if best is None else [min(a, b) for a, b in zip(best, values)]
        print(f"{n_groups:>9,}{best[0]:>10.2f}{best[1]:>13.3f}{best[2]:>13.3f}")


def exact_posterior_times():
    print("\nexact_posterior (quadrature), best of 3")
    for n_groups in (8, 1_000):
        y, sigma = (Y, SIGMA) if n_groups == 8 else simulated_groups(n_groups)
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            exact_posterior(y, sigma)
            best = min(best, time.perf_counter() - start)
        print(f"  J = {n_groups:>5,}: {best:.3f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no subprocesses")
    args = parser.parse_args()
    gradient_table(repeats=3 if args.quick else 7)
    if not args.quick:
        fresh_process_build_times()
    exact_posterior_times()


if __name__ == "__main__":
    main()
