"""Stan's warmup (metric="diag"), the same with dual averaging run on across the windows
(step_size_restart="first_window") and nutpie's (metric="diag_grad"), seed by seed.

    python -m benchmarks.adaptation                       # 10 seeds, three workloads
    python -m benchmarks.adaptation --seeds 3 --workloads eight_schools_nc
    python benchmarks/adaptation.py --markdown out.md     # also write the table
    python -m benchmarks.adaptation --peers nutpie stan   # the peers on the same seeds

Every run is ``uturn.sample(model, draws, tune, chains=4, seed=s, cores=2, **warmup)``
with the settings of ``WARMUPS``; for each seed the warmups run back to back (diag,
diag first_window, diag_grad, then the next seed), so that the noise of a shared
machine hits them alike. Per run:

* ``ESS/1k grad``: ESS_bulk (``uturn.diagnostics.ess_bulk``) of the quantity of
  interest (``log_tau``, unconstrained coordinate 1, for the hierarchical models;
  ``x[0]`` for the Gaussian) per 1,000 gradient evaluations of the sampling phase
  (the sum of ``fit.stats["n_steps"]``), the measure of issue 6;
* ``min ESS/1k grad``: the smallest ESS_bulk over all unconstrained coordinates, per
  1,000 sampling gradients;
* ``grads total``: ``fit.n_gradient_evals`` summed over chains (warmup, step-size
  searches and sampling);
* divergences after warmup, the final step size (median over chains), the mean
  acceptance statistic of the sampling phase (what dual averaging steers to
  ``target_accept``, 0.8: Stan's ``accept_stat__``) and the wall time of
  ``uturn.sample``.

The table gives the median and the interquartile range (25%-75%) over seeds, and
the mean with its standard error for ESS/1k grad: one seed's ESS varies by 10-20%,
so the peer benchmark's median of three seeds cannot rank two warmups that differ by
less. The compiled sampler and each model's wrapper are warmed up by one short
untimed run.

``--peers`` adds the peers of ``benchmarks.compare`` (installed by the ``bench``
extra) on the same seeds, in this process, each built once and warmed up by one run:
ESS is computed by the same ``ess_bulk`` from the draws their ``run`` returns, and
the gradients are their reported leapfrog steps (warmup included in ``grads total``
where the peer reports it). Step size and acceptance statistic come from the peers
that report them (Stan, nutpie, PyMC; ``–`` for BlackJAX and NumPyro, whose jitted
runs do not return them). A peer's seed is its own generator's: the same number
gives different draws than uturn's.
"""
import argparse
import functools
import os
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
#: uturn's warmups in the study, by the name its table gives them: Stan's (the default),
#: Stan's windows with dual averaging restarted after the first only, and nutpie's.
WARMUPS = {"diag": dict(metric="diag"),
           "diag first_window": dict(metric="diag", step_size_restart="first_window"),
           "diag_grad": dict(metric="diag_grad")}
COLUMNS = ("ess_q", "ess_min", "grads_total", "divergences", "step_size", "acceptance",
           "seconds", "mean_q")
HEADERS = ("ESS/1k grad", "min ESS/1k grad", "grads total", "divergences",
           "step size", "accept stat", "wall s", "E[q]: mean over seeds ± se (error in se)")


def build_model(name):
    """The uturn model of a workload; eight schools is uturn's built-in model."""
    if name == "eight_schools_nc":
        return uturn.models.eight_schools(centered=False), 1
    workload = workloads.get(name)
    return workload.uturn_model(), int(workload.monitored[workload.quantity_index])


def measure(model, quantity, warmup, seed, draws, tune, chains, cores):
    """One run of uturn with the warmup named ``warmup`` (a key of ``WARMUPS``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the step-size heuristic's; the table has the rest
        start = time.perf_counter()
        # No automatic checks: the table has the numbers, and the seconds match the
        # peers' (timed as benchmarks/peers/uturn_.py times them).
        fit = uturn.sample(model, draws=draws, tune=tune, chains=chains, seed=seed,
                           cores=cores, progress=False, checks=False, **WARMUPS[warmup])
        seconds = time.perf_counter() - start
    return _row(fit.unconstrained, quantity, float(np.sum(fit.stats["n_steps"])),
                grads_total=float(np.sum(fit.n_gradient_evals)),
                divergences=float(fit.num_divergences),
                step_size=float(np.median(fit.step_size)),
                acceptance=float(np.mean(fit.stats["acceptance_rate"])), seconds=seconds)


def _row(draws, quantity, sampling_gradients, **measured):
    """The table's figures of one run from its draws (chains, draws, k), the column of
    the quantity of interest and the gradients of the sampling phase, plus the rest
    as measured."""
    per_1k = 1000.0 / sampling_gradients
    ess_all = np.array([ess_bulk(draws[:, :, j]) for j in range(draws.shape[2])])
    return dict(ess_q=ess_all[quantity] * per_1k, ess_min=np.nanmin(ess_all) * per_1k,
                mean_q=float(np.mean(draws[:, :, quantity])), **measured)


def measure_peer(peer, state, workload, seed):
    """One ``peer.run(state, seed)``, measured as :func:`measure` measures uturn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = peer.run(state, seed)
    sampling = float(np.sum(output.n_steps))
    total = sampling if output.warmup_n_steps is None \
        else sampling + float(np.sum(output.warmup_n_steps)) \
        + float(output.extra_warmup_gradients or 0)
    return _row(output.draws, workload.quantity_index, sampling, grads_total=total,
                divergences=float(np.sum(output.diverging)),
                step_size=np.nan if output.step_size is None
                else float(np.median(output.step_size)),
                acceptance=np.nan if output.acceptance is None
                else float(np.mean(output.acceptance)),
                seconds=output.seconds)


def _build_peers(names, workload, config, log):
    """``{name: (module, state)}`` of the peers that are installed, each warmed up."""
    from benchmarks import peers
    built = {}
    for name in names:
        missing = peers.missing_packages(name)
        if missing:
            log(f"{name}: skipped, not installed ({', '.join(missing)})")
            continue
        peer = peers.load(name)
        os.environ.update(peer.env(config))   # before the peer imports jax
        state = peer.build(workload, config)
        measure_peer(peer, state, workload, 10_000)
        built[name] = (peer, state)
    return built


def run(names, seeds, draws, tune, chains, cores, first_seed, log=print, peer_names=()):
    from benchmarks.peers import RunConfig
    config = RunConfig(chains=chains, tune=tune, draws=draws, cores=cores)
    results = {}
    for name in names:
        model, quantity = build_model(name)
        for warmup in WARMUPS:  # compile the model's wrapper, warm caches
            measure(model, quantity, warmup, 10_000, 50, 50, 1, 1)
        workload = workloads.get(name)
        built = _build_peers(peer_names, workload, config, log)
        rows = {metric: [] for metric in tuple(WARMUPS) + tuple(built)}
        for seed in range(first_seed, first_seed + seeds):
            for metric in rows:
                if metric in built:
                    peer, state = built[metric]
                    row = measure_peer(peer, state, workload, seed)
                else:
                    row = measure(model, quantity, metric, seed, draws, tune, chains, cores)
                rows[metric].append(row)
                log(f"{name:20s} {metric:17s} seed {seed:3d}: "
                    + "  ".join(f"{k} {row[k]:.4g}" for k in COLUMNS))
        results[name] = rows
    return results


def standard_error(values, axis=None):
    """Standard error of a mean over independent runs (seeds): the sample standard
    deviation (ddof 1) over ``sqrt(n)``, along ``axis`` (all values when None)."""
    values = np.asarray(values)
    n = values.size if axis is None else values.shape[axis]
    return np.std(values, axis=axis, ddof=1) / np.sqrt(n)


def _cell(values, column, exact=None):
    if column in ("step_size", "acceptance") and np.all(np.isnan(values)):
        return "–"
    if column == "mean_q":
        # Each seed's E[q] is one estimate; their spread over seeds is the honest error
        # bar of a warmup's bias (a funnel's chains stick, and their MCSE says too little).
        mean = np.mean(values)
        if len(values) < 2:
            return f"{mean:.3f}"
        error = standard_error(values)
        cell = f"{mean:.3f} ± {error:.3f}"
        if exact is not None and error > 0:
            cell += f" ({(mean - exact) / error:+.1f})"
        return cell
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    if column == "grads_total":
        return f"{q50:,.0f} ({q25:,.0f}-{q75:,.0f})"
    if column == "divergences":
        return f"{q50:g} ({q25:g}-{q75:g}), total {np.sum(values):g}"
    if column in ("step_size", "acceptance"):
        # Two warmups that are the same algorithm differ here only by the seeds' luck:
        # the mean and its standard error say whether a difference is more than that.
        cell = f"{q50:.3f} ({q25:.3f}-{q75:.3f})"
        if len(values) > 1:
            cell += f"; mean {np.mean(values):.4f} ± {standard_error(values):.4f}"
        return cell
    if column == "seconds":
        return f"{q50:.2f} ({q25:.2f}-{q75:.2f})"
    cell = f"{q50:.1f} ({q25:.1f}-{q75:.1f})"
    if column == "ess_q" and len(values) > 1:
        cell += f"; mean {np.mean(values):.1f} ± {standard_error(values):.1f}"
    return cell


def table(results):
    lines = ["| workload | sampler / metric | " + " | ".join(HEADERS) + " |",
             "|---|---|" + "---|" * len(HEADERS)]
    for name, rows in results.items():
        exact = _exact_mean(name)
        for metric, runs in rows.items():
            cells = [_cell([r[c] for r in runs], c, exact) for c in COLUMNS]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def _exact_mean(name):
    """The exact E[q] of workload ``name`` (quadrature or the Gaussian's mean)."""
    return float(workloads.get(name).exact_mean())


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
    parser.add_argument("--peers", nargs="*", default=[],
                        choices=["stan", "nutpie", "blackjax", "numpyro", "pymc"],
                        help="peers to run on the same seeds (bench extra)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the table to this file")
    args = parser.parse_args(argv)
    results = run(args.workloads, args.seeds, args.draws, args.tune, args.chains,
                  args.cores, args.first_seed, peer_names=args.peers)
    header = (f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), "
              f"cores={args.cores}, seeds {args.first_seed}..."
              f"{args.first_seed + args.seeds - 1}; median (IQR) over seeds, and the mean ± its standard error "
              f"for ESS/1k grad; E[q] is the mean over seeds of each run's mean of the "
              f"quantity, exact value {', '.join(f'{n} {_exact_mean(n):.5f}' for n in results)}")
    text = header + "\n\n" + table(results)
    print()
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
