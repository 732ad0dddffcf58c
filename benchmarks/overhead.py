"""Sampler overhead: what a NUTS leapfrog step costs beyond the bare gradient (at
dim 10 and 100, and on an iid Gaussian from dim 10 to 10,000 per coordinate), the
least a leaf can cost (a bare leapfrog step against the gradient, on eight schools
and at J = 1,000), whether the hot loop allocates, where a whole eight-schools call goes (chains, automatic
checks, fixed cost), and how long a fresh process waits for its first draw.

    python benchmarks/overhead.py            # all of it (about a minute)
    python benchmarks/overhead.py --quick    # fewer repeats

Goals (issue 2): at 100-d a NUTS leapfrog step costs at most 1.5x the bare gradient;
a fresh process with a warm numba cache reaches its first draw in under 1 s after import.
Timings on a shared machine are noisy: each figure is the minimum of several repeats,
and the ratio is taken between numbers measured side by side in the same process.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

from pathlib import Path

import numpy as np
from numba import njit, types

if __package__ in (None, ""):
    # Run as `python benchmarks/overhead.py`: make the repository root importable,
    # for benchmarks.workloads (the J = 1,000 data of the comparison).
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import uturn
from uturn.model import LOGP_GRAD_TYPE
from uturn.models import eight_schools, hierarchical_normal
from uturn.models.gaussian import dense_gaussian, iid_gaussian
from uturn.sampling import _automatic_checks

from benchmarks.workloads import simulated_groups


@njit(types.float64(LOGP_GRAD_TYPE, types.float64[::1], types.float64[::1], types.int64),
      nogil=True)
def _gradient_loop(logp_grad, x, grad, n):
    """Call the gradient n times through the same first-class function type the sampler uses."""
    total = 0.0
    for i in range(n):
        x[i % x.shape[0]] += 1e-12  # a dependency so no call can be skipped
        total += logp_grad(x, grad)
    return total


@njit(types.float64(LOGP_GRAD_TYPE, types.float64[::1], types.float64[::1],
                    types.float64[::1], types.float64[::1], types.float64, types.int64),
      nogil=True, fastmath={"reassoc", "contract"})
def _bare_leapfrog_loop(logp_grad, x, p, grad, inv_metric, step_size, n):
    """``n`` leapfrog steps with a diagonal metric and nothing else: the two half kicks
    of consecutive steps share one pass over the vectors with the drift (as uturn's
    subtrees run them), and the pass sums the kinetic energy that every NUTS leaf
    needs for its weight. No tree, U-turn check, momentum draw or multinomial
    sampling: the least a NUTS leaf of this model can cost."""
    half_step = 0.5 * step_size
    total = logp_grad(x, grad)
    for k in range(x.shape[0]):
        p[k] += half_step * grad[k]
        x[k] += step_size * (inv_metric[k] * p[k])
    for _ in range(n):
        total += logp_grad(x, grad)
        twice_kinetic = 0.0
        for k in range(x.shape[0]):
            momentum = p[k] + half_step * grad[k]
            twice_kinetic += momentum * (inv_metric[k] * momentum)
            p[k] = momentum + half_step * grad[k]
            x[k] += step_size * (inv_metric[k] * p[k])
        total += twice_kinetic
    return total


def leapfrog_floor(model, repeats):
    """ns per call of the bare gradient, of a bare leapfrog step
    (:func:`_bare_leapfrog_loop`) and of a NUTS leaf all in (one chain at the step
    size and metric of a 1,000 + 1,000 warmup, no warmup timed; per-transition work
    included), and the mean leaves per transition."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = uturn.sample(model, draws=1000, tune=1000, chains=1, seed=1,
                           progress=False, checks=False)
    step, inv_metric = float(fit.step_size[0]), np.array(fit.inv_metric[0])
    start = np.array(fit.unconstrained[0, -1])
    gradient = ns_per_gradient(model, repeats, at=start)
    n = max(20000, int(2e7 / model.dim))
    x, p, grad = start.copy(), np.zeros(model.dim), np.empty(model.dim)
    # A step of 1e-9 keeps x where it started for the whole loop: the cost is the same
    # at any step, and no overflow can end it early.
    _bare_leapfrog_loop(model.logp_grad, x, p, grad, inv_metric, 1e-9, 10)
    bare = np.inf
    for _ in range(repeats):
        x[:], p[:] = start, 0.0
        begin = time.perf_counter()
        _bare_leapfrog_loop(model.logp_grad, x, p, grad, inv_metric, 1e-9, n)
        bare = min(bare, (time.perf_counter() - begin) / n)
    leaf, steps = _ns_per_leaf(model, repeats, draws=max(500, int(4e6 / model.dim / 8)),
                               metric=inv_metric, step_size=step, init=start, cores=1,
                               checks=False)
    return gradient, bare * 1e9, leaf, steps


def ns_per_gradient(model, repeats, at=None):
    """Best over ``repeats`` loops of ns per call of the bare gradient, at ``at`` (by
    default a normal draw around a Gaussian model's mean)."""
    if at is None:
        at = np.random.default_rng(0).standard_normal(model.dim) + model.mean
    x = np.array(at, dtype=np.float64)
    grad = np.empty(model.dim)
    n = max(20000, int(2e7 / model.dim ** 1.5))
    _gradient_loop(model.logp_grad, x, grad, 10)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        _gradient_loop(model.logp_grad, x, grad, n)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e9


def ns_per_nuts_step(model, dense, repeats):
    """One chain with the exact metric and a step size tuned by a short warmup, then
    no warmup: wall time over leapfrog steps."""
    inv_metric = model.cov if dense else np.diag(model.cov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one short chain: convergence checks are moot
        fit = uturn.sample(model, draws=300, tune=1000, chains=1, seed=1, progress=False,
                           metric=inv_metric)
    step = float(fit.step_size[0])
    draws = max(2000, int(2e6 / (model.dim * np.mean(fit.stats["n_steps"]))))
    return _ns_per_leaf(model, repeats, draws=draws, metric=inv_metric, step_size=step,
                        init=model.mean)


def _ns_per_leaf(model, repeats, **settings):
    """Best over ``repeats`` one-chain runs without warmup of wall time per leapfrog
    step, and the mean steps per draw of the last run."""
    best = np.inf
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = uturn.sample(model, tune=0, chains=1, seed=2, progress=False, **settings)
        best = min(best, fit.elapsed / fit.n_gradient_evals.sum())
    return best * 1e9, float(np.mean(fit.stats["n_steps"]))


def ns_beyond_gradient(dim, repeats, step_size=0.25):
    """A leaf's cost beyond the bare gradient on an iid Gaussian: one chain, no warmup, a
    fixed step size; returns ``(ns per gradient, ns per leaf)``. At large dim the
    difference per coordinate is the sampler's own arithmetic and memory traffic."""
    model = iid_gaussian(dim)
    gradient = ns_per_gradient(model, repeats)
    leaf, _ = _ns_per_leaf(model, repeats, draws=max(500, int(3e6 / dim / 16)),
                           step_size=step_size, init=np.full(dim, 0.1), cores=1)
    return gradient, leaf


def call_split(calls):
    """Milliseconds of ``uturn.sample`` on non-centered eight schools (4 chains of 1,000 +
    1,000, ``cores=2``, as the comparison runs it): the whole call, the automatic checks
    it ends with (R-hat and ESS of every quantity, timed again on the call's fit), and a
    call of 4 x (10 + 10) iterations, which is nearly all fixed cost. Each as
    ``(median, min)`` over ``calls`` calls with distinct seeds."""
    model = eight_schools(centered=False)
    whole, checks, tiny = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny calls' checks complain, rightly
        for seed in range(3):
            uturn.sample(model, chains=4, seed=seed, cores=2, progress=False)
        for seed in range(calls):
            start = time.perf_counter()
            fit = uturn.sample(model, chains=4, seed=100 + seed, cores=2, progress=False)
            whole.append(time.perf_counter() - start)
            start = time.perf_counter()
            _automatic_checks(fit)
            checks.append(time.perf_counter() - start)
            start = time.perf_counter()
            uturn.sample(model, draws=10, tune=10, chains=4, seed=seed, cores=2,
                         progress=False)
            tiny.append(time.perf_counter() - start)
    return [(1e3 * np.median(t), 1e3 * np.min(t)) for t in (whole, checks, tiny)]


FRESH_PROCESS = textwrap.dedent("""
    import time
    start = time.perf_counter()
    import numba, numpy as np
    import uturn
    imported = time.perf_counter()

    @numba.njit
    def logp_grad(x, grad):
        total = 0.0
        for i in range(x.shape[0]):
            grad[i] = -x[i]
            total -= 0.5 * x[i] * x[i]
        return total

    model = uturn.Model(logp_grad, 10)
    built = time.perf_counter()
    fit = uturn.sample(model, draws=100, tune=100, chains=4, seed=1, progress=False)
    done = time.perf_counter()
    print(f"{imported - start:.3f} {built - imported:.3f} {done - built:.3f} {done - imported:.3f}")
""")


def fresh_process(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return [float(v) for v in out]


ALLOCATIONS = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    from numba.core.runtime import rtsys
    import uturn
    from uturn.models.gaussian import iid_gaussian
    model = iid_gaussian(10)
    warnings.simplefilter("ignore")
    uturn.sample(model, draws=10, tune=0, chains=1, seed=1, progress=False, step_size=0.5)
    counts = []
    for draws in (100, 10000):
        before = rtsys.get_allocation_stats().alloc
        uturn.sample(model, draws=draws, tune=draws, chains=1, seed=1, progress=False)
        counts.append(rtsys.get_allocation_stats().alloc - before)
    print(*counts)
""")


def allocations_per_run():
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    out = subprocess.run([sys.executable, "-c", ALLOCATIONS], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return [int(v) for v in out]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7

    rng = np.random.default_rng(42)
    print("## Cost of a NUTS leapfrog step against the bare gradient\n")
    print("| target | dim | ns / gradient | ns / NUTS leapfrog step | ratio | mean steps / draw |")
    print("|---|---:|---:|---:|---:|---:|")
    for dim in (10, 100):
        a = rng.standard_normal((dim, dim))
        cov = a @ a.T / dim + np.eye(dim)
        for name, model, dense in (("iid N(0, I), diag metric", iid_gaussian(dim), False),
                                   ("correlated, dense metric",
                                    dense_gaussian(np.zeros(dim), cov), True)):
            gradient = ns_per_gradient(model, repeats)
            step, steps = ns_per_nuts_step(model, dense, repeats)
            print(f"| {name} | {dim} | {gradient:.0f} | {step:.0f} | {step / gradient:.2f} "
                  f"| {steps:.1f} |")

    print("\n## A leaf beyond the gradient, by dimension (iid N(0, I), step 0.25, no warmup)\n")
    print("| dim | ns / gradient | ns / leaf | beyond the gradient (ns) | per coordinate (ns) |")
    print("|---:|---:|---:|---:|---:|")
    for dim in (10, 100, 1000, 10000):
        gradient, leaf = ns_beyond_gradient(dim, repeats)
        print(f"| {dim:,} | {gradient:.0f} | {leaf:.0f} | {leaf - gradient:.0f} "
              f"| {(leaf - gradient) / dim:.2f} |")

    print("\n## The least a leaf can cost: a bare leapfrog step against the gradient\n")
    print("The physical limit of benchmarks.compare counts the gradient alone. A bare "
          "leapfrog step (one fused pass over the vectors with the kinetic energy, no "
          "tree) is the least any NUTS leaf costs; a NUTS leaf all in adds the tree, "
          "the U-turn checks, the sampling and each transition's momentum draw.\n")
    print("| model | dim | ns / gradient | ns / bare leapfrog step | ns / NUTS leaf, all in "
          "| bare / gradient | NUTS / gradient | leaves / transition |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    y, sigma = simulated_groups(1000, seed=0)
    for name, model in (("eight schools, non-centered", eight_schools(centered=False)),
                        ("hierarchical, non-centered, J = 1,000",
                         hierarchical_normal(y, sigma, centered=False))):
        gradient, bare, leaf, steps = leapfrog_floor(model, repeats)
        print(f"| {name} | {model.dim:,} | {gradient:.0f} | {bare:.0f} | {leaf:.0f} "
              f"| {bare / gradient:.2f} | {leaf / gradient:.2f} | {steps:.1f} |")

    print("\n## Allocations by the compiled chain (numba NRT, NUMBA_NRT_STATS=1)\n")
    small, large = allocations_per_run()
    print(f"100 + 100 iterations: {small} allocations; 10,000 + 10,000 iterations: {large} "
          f"allocations ({'the same: nothing is allocated per iteration' if small == large else 'DIFFERENT: the loop allocates'})")

    print("\n## Where an eight-schools call goes (non-centered, 4 x (1,000 + 1,000), cores=2)\n")
    whole, checks, tiny = call_split(15 if args.quick else 40)
    print("| part | median (ms) | min (ms) |")
    print("|---|---:|---:|")
    for label, (median, least) in (("whole call", whole),
                                   ("its automatic checks (R-hat, ESS of 19 quantities)", checks),
                                   ("a 4 x (10 + 10) call: the fixed cost", tiny)):
        print(f"| {label} | {median:.2f} | {least:.2f} |")
    print(f"| chains, by difference (whole - checks - fixed) | "
          f"{whole[0] - checks[0] - tiny[0]:.2f} | |")

    print("\n## A fresh process: import, build a model, sample 4 x (100 + 100)\n")
    print("| numba cache | import uturn (s) | Model() incl. user compile (s) | sample (s) "
          "| after import to draws (s) |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as cache:
        cold = fresh_process(cache)
        warm = [fresh_process(cache) for _ in range(3 if args.quick else 5)]
    warm = min(warm, key=lambda row: row[3])
    for label, row in (("cold (first run on a machine)", cold), ("warm", warm)):
        print(f"| {label} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} | {row[3]:.2f} |")


if __name__ == "__main__":
    main()
