"""uturn's NUTS transition against Stan's at one fixed step size, no adaptation.

    python -m benchmarks.stan_fixed_step                        # centered, step 0.2
    python -m benchmarks.stan_fixed_step --step 0.1 --seeds 10 --draws 2000
    python -m benchmarks.stan_fixed_step --noncentered

PyStan 3 offers only the adaptive service (``hmc_nuts_diag_e_adapt``); with
``num_warmup=0`` it leaves the step size at ``exp(x_bar) = 1`` and the metric at
the identity. So Stan runs eight schools written in the coordinates ``z = x / step``
(a linear map: the density is unchanged up to a constant), where a leapfrog step of
1 with a unit metric is, state by state, a step of ``step`` in uturn's coordinates
``x``; uturn runs its own model with ``tune=0``, ``step_size=step``, ``metric="unit"``
and initial points drawn as Stan's (uniform(-2, 2) in ``z``). Both transitions then
sample the same Markov kernel, so every statistic below must agree within its error:
the mean acceptance statistic, leapfrog steps, divergences and tree depth per
transition, and the mean of log tau, each averaged over 4 chains per seed, then
mean ± standard error over seeds. On the centered model this is the funnel, where a
difference in how divergences end a trajectory or count in the acceptance
statistic would show.
"""
import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import uturn  # noqa: E402
from uturn.models import eight_schools  # noqa: E402
from uturn.models.eight_schools import SIGMA, Y  # noqa: E402

from benchmarks.adaptation import standard_error  # noqa: E402

# x = (mu, log_tau, theta or nu) = step * z.
_PROGRAM = """
data {{ int J; vector[J] y; vector[J] sigma; real step; }}
parameters {{ vector[J + 2] z; }}
model {{
  real mu = step * z[1];
  real log_tau = step * z[2];
  vector[J] group = step * z[3:(J + 2)];
  real tau = exp(log_tau);
  target += normal_lpdf(mu | 0, 5) + cauchy_lpdf(tau | 0, 5) + log_tau;
  {body}
}}
"""
_BODIES = {
    "centered": "target += normal_lpdf(group | mu, tau) + normal_lpdf(y | group, sigma);",
    "noncentered": "target += std_normal_lpdf(group) + normal_lpdf(y | mu + tau * group, sigma);",
}
STATISTICS = ("accept stat", "leapfrog steps", "divergent", "tree depth", "E[log tau]")


def compare(centered, step, draws, seeds, chains=4):
    """Per seed, the five statistics of Stan and of uturn: ``{"stan": (seeds, 5),
    "uturn": (seeds, 5)}``."""
    import stan
    from benchmarks.peers.stan_ import _forget_cached_fits
    program = _PROGRAM.format(body=_BODIES["centered" if centered else "noncentered"])
    posterior = stan.build(program, data={"J": 8, "y": list(Y), "sigma": list(SIGMA),
                                          "step": step}, random_seed=1)
    model = eight_schools(centered=centered)
    rows = {"stan": [], "uturn": []}
    for seed in range(1, seeds + 1):
        run = dataclasses.replace(posterior, random_seed=seed)
        _forget_cached_fits(run.model_name)
        fit = run.sample(num_chains=chains, num_warmup=0, num_samples=draws)
        table, names = fit._draws, list(fit.sample_and_sampler_param_names)
        stat = lambda name: table[names.index(name)]  # noqa: E731
        if not np.all(stat("stepsize__") == 1.0):
            raise RuntimeError("Stan did not keep the step size at 1 with num_warmup=0")
        log_tau = step * table[len(names) + 1]
        rows["stan"].append([stat("accept_stat__").mean(), stat("n_leapfrog__").mean(),
                             stat("divergent__").mean(), stat("treedepth__").mean(),
                             log_tau.mean()])
        init = step * np.random.default_rng(seed).uniform(-2, 2, size=(chains, model.dim))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = uturn.sample(model, draws=draws, tune=0, chains=chains, seed=seed,
                                step_size=step, metric="unit", init=init, progress=False)
        stats = ours.stats
        rows["uturn"].append([stats["acceptance_rate"].mean(), stats["n_steps"].mean(),
                              stats["diverging"].mean(), stats["tree_depth"].mean(),
                              ours["log_tau"].mean()])
    return {name: np.array(values) for name, values in rows.items()}


def table(rows):
    lines = ["| sampler | " + " | ".join(STATISTICS) + " |",
             "|---|" + "---|" * len(STATISTICS)]
    for name, values in rows.items():
        mean, error = values.mean(axis=0), standard_error(values, axis=0)
        lines.append(f"| {name} | " + " | ".join(f"{m:.4f} ± {e:.4f}"
                                                 for m, e in zip(mean, error)) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noncentered", action="store_true")
    parser.add_argument("--step", type=float, default=0.2)
    parser.add_argument("--draws", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    rows = compare(not args.noncentered, args.step, args.draws, args.seeds)
    print(f"eight schools, {'non-centered' if args.noncentered else 'centered'}, step "
          f"{args.step}, unit metric, 4 chains x {args.draws} draws, seeds 1..{args.seeds}: "
          f"mean ± se over seeds")
    print(table(rows))


if __name__ == "__main__":
    main()
