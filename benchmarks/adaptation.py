"""Stan's warmup (metric="diag") against nutpie's (metric="diag_grad"), seed by seed.

    python -m benchmarks.adaptation                       # 10 seeds, three workloads
    python -m benchmarks.adaptation --seeds 3 --workloads eight_schools_nc
    python benchmarks/adaptation.py --markdown out.md     # also write the table

Every run is ``uturn.sample(model, draws, tune, chains=4, seed=s, cores=2,
metric=m)``; for each seed the metrics run back to back (diag, diag_grad, then the
next seed), so that the noise of a shared machine hits both alike. Per run:

* ``ESS/1k grad``: ESS_bulk (``uturn.diagnostics.ess_bulk``) of the quantity of
  interest (``log_tau``, unconstrained coordinate 1, for the hierarchical models;
  ``x[0]`` for the Gaussian) per 1,000 gradient evaluations of the sampling phase
  (the sum of ``fit.stats["n_steps"]``), the measure of issue 6;
* ``min ESS/1k grad``: the smallest ESS_bulk over all unconstrained coordinates, per
  1,000 sampling gradients;
* ``grads total``: ``fit.n_gradient_evals`` summed over chains (warmup, step-size
  searches and sampling);
* divergences after warmup, the final step size (median over chains) and the wall
  time of ``uturn.sample``.

The table gives the median and the interquartile range (25%-75%) over seeds. The
compiled sampler and each model's wrapper are warmed up by one short untimed run.
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import uturn  # noqa: E402
from uturn.diagnostics import ess_bulk  # noqa: E402

from benchmarks import workloads  # noqa: E402

WORKLOADS = ("eight_schools_nc", "gaussian_dense_100", "hier_nc_1000")
METRICS = ("diag", "diag_grad")
COLUMNS = ("ess_q", "ess_min", "grads_total", "divergences", "step_size", "seconds")
HEADERS = ("ESS/1k grad", "min ESS/1k grad", "grads total", "divergences",
           "step size", "wall s")


def build_model(name):
    """The uturn model of a workload; eight schools is uturn's built-in model."""
    if name == "eight_schools_nc":
        return uturn.models.eight_schools(centered=False), 1
    workload = workloads.get(name)
    return workload.uturn_model(), int(workload.monitored[workload.quantity_index])


def measure(model, quantity, metric, seed, draws, tune, chains, cores):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the table has the numbers
        start = time.perf_counter()
        fit = uturn.sample(model, draws=draws, tune=tune, chains=chains, seed=seed,
                           cores=cores, metric=metric, progress=False)
        seconds = time.perf_counter() - start
    per_1k = 1000.0 / float(np.sum(fit.stats["n_steps"]))
    x = fit.unconstrained
    ess_all = np.array([ess_bulk(x[:, :, j]) for j in range(x.shape[2])])
    return dict(ess_q=ess_all[quantity] * per_1k, ess_min=np.nanmin(ess_all) * per_1k,
                grads_total=float(np.sum(fit.n_gradient_evals)),
                divergences=float(fit.num_divergences),
                step_size=float(np.median(fit.step_size)), seconds=seconds,
                mean_q=float(np.mean(x[:, :, quantity])))


def run(names, seeds, draws, tune, chains, cores, first_seed, log=print):
    results = {}
    for name in names:
        model, quantity = build_model(name)
        for metric in METRICS:  # compile the model's wrapper, warm caches
            measure(model, quantity, metric, 10_000, 50, 50, 1, 1)
        rows = {metric: [] for metric in METRICS}
        for seed in range(first_seed, first_seed + seeds):
            for metric in METRICS:
                row = measure(model, quantity, metric, seed, draws, tune, chains, cores)
                rows[metric].append(row)
                log(f"{name:20s} {metric:10s} seed {seed:3d}: "
                    + "  ".join(f"{k} {row[k]:.4g}" for k in COLUMNS + ("mean_q",)))
        results[name] = rows
    return results


def _cell(values, column):
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    if column == "grads_total":
        return f"{q50:,.0f} ({q25:,.0f}-{q75:,.0f})"
    if column == "divergences":
        return f"{q50:g} ({q25:g}-{q75:g}), total {np.sum(values):g}"
    if column == "step_size":
        return f"{q50:.3g} ({q25:.3g}-{q75:.3g})"
    if column == "seconds":
        return f"{q50:.2f} ({q25:.2f}-{q75:.2f})"
    return f"{q50:.1f} ({q25:.1f}-{q75:.1f})"


def table(results):
    lines = ["| workload | metric | " + " | ".join(HEADERS) + " |",
             "|---|---|" + "---|" * len(HEADERS)]
    for name, rows in results.items():
        for metric, runs in rows.items():
            cells = [_cell([r[c] for r in runs], c) for c in COLUMNS]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=["eight_schools_nc", "eight_schools_c",
                                 "gaussian_dense_100", "hier_nc_1000"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the table to this file")
    args = parser.parse_args(argv)
    results = run(args.workloads, args.seeds, args.draws, args.tune, args.chains,
                  args.cores, args.first_seed)
    header = (f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), "
              f"cores={args.cores}, seeds {args.first_seed}..."
              f"{args.first_seed + args.seeds - 1}; median (IQR) over seeds")
    text = header + "\n\n" + table(results)
    print()
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
