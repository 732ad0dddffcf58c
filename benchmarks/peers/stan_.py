"""Stan through PyStan 3 (httpstan compiles the model with the local C++ compiler).

``tau`` is declared ``real<lower=0>``: Stan samples ``log(tau)`` with the log
Jacobian, uturn's ``log_tau`` coordinate; its parameters come in the order they
are declared, ``mu, tau, nu`` as in uturn.
"""
import dataclasses
import time

import numpy as np

from . import RunOutput

LABEL = "Stan (PyStan 3)"
REQUIRES = ("stan", "httpstan")
VERSIONS = ("pystan", "httpstan")
PRIME_CACHE = False    # httpstan caches whole compiled models only: nothing shared to prime

_HIERARCHICAL = """
data {{ int<lower=0> J; vector[J] y; vector<lower=0>[J] sigma; }}
parameters {{ real mu; real<lower=0> tau; vector[J] {group}; }}
model {{
  mu ~ normal(0, 5);
  tau ~ cauchy(0, 5);
  {body}
}}
"""
PROGRAMS = {
    "noncentered": _HIERARCHICAL.format(
        group="nu", body="nu ~ std_normal();\n  y ~ normal(mu + tau * nu, sigma);"),
    "centered": _HIERARCHICAL.format(
        group="theta", body="theta ~ normal(mu, tau);\n  y ~ normal(theta, sigma);"),
    "gaussian": """
data { int<lower=1> N; vector[N] m; matrix[N, N] L; }
parameters { vector[N] x; }
model { x ~ multi_normal_cholesky(m, L); }
""",
}

# httpstan returns every draw as a line of JSON; at J = 100,000 that is about
# 4 x 2,000 x 100,000 numbers, 15 GB of text to write, send and parse per run.
_JSON_LIMIT_VALUES = 50_000_000


def env(config):
    return {}


def skip_reason(workload, config, full):
    values = config.chains * (config.tune + config.draws) * workload.dim
    if values > _JSON_LIMIT_VALUES and not full:
        return (f"httpstan returns draws as JSON: {values / 1e6:,.0f} million numbers "
                f"(~{values * 20 / 1e9:,.0f} GB of text) per run (--full to try)")
    return None


def settings(config):
    return (f"`stan.build(program, data, random_seed=seed)` then "
            f"`posterior.sample(num_chains={config.chains}, num_warmup={config.tune}, "
            f"num_samples={config.draws}, save_warmup=True)`; Stan's defaults otherwise "
            f"(diag_e metric, adapt delta 0.8, max depth 10); httpstan runs chains in a "
            f"pool of cpu_count() processes")


def fresh_cache_env(directory):
    # httpstan keeps compiled models and fits under appdirs' user cache directory.
    return {"XDG_CACHE_HOME": str(directory)}


def _program_and_data(workload):
    if workload.kind == "gaussian":
        return PROGRAMS["gaussian"], {"N": workload.dim, "m": workload.mean,
                                      "L": np.linalg.cholesky(workload.cov)}
    program = PROGRAMS["centered" if workload.centered else "noncentered"]
    return program, {"J": workload.n_groups, "y": workload.y, "sigma": workload.sigma}


def build(workload, config):
    """Compile (or fetch from httpstan's cache) the Stan program with the workload's data."""
    import stan
    program, data = _program_and_data(workload)
    posterior = stan.build(program, data=data, random_seed=1)
    return {"posterior": posterior, "workload": workload, "config": config}


def _forget_cached_fits(model_name):
    """httpstan returns a cached fit for a repeated (model, data, seed, settings):
    delete them all so that every run samples."""
    import httpstan.cache
    for path in (httpstan.cache.model_directory(model_name)).glob("**/*.jsonlines.gz"):
        path.unlink(missing_ok=True)


def run(state, seed):
    """One timed ``posterior.sample`` with a fresh seed -> :class:`RunOutput`."""
    workload, config = state["workload"], state["config"]
    # random_seed is fixed by stan.build; the Model is a frozen dataclass.
    posterior = dataclasses.replace(state["posterior"], random_seed=int(seed))
    _forget_cached_fits(posterior.model_name)
    start = time.perf_counter()
    fit = posterior.sample(num_chains=config.chains, num_warmup=config.tune,
                           num_samples=config.draws, save_warmup=True)
    seconds = time.perf_counter() - start
    # fit._draws is (sampler params + parameters, saved draws, chains), warmup first;
    # rows are transposed to (chains, draws[, coordinates]) below.
    table = fit._draws
    sampler_names = list(fit.sample_and_sampler_param_names)
    offset = len(sampler_names)
    rows = {name: offset + k for k, name in enumerate(fit.constrained_param_names)}
    kept = slice(config.tune, None)
    if workload.kind == "gaussian":
        first = rows["x.1"]
        draws = workload.select(
            x=np.transpose(table[first:first + workload.dim, kept], (2, 1, 0)))
    else:
        first = rows[f"{workload.group_name}.1"]
        draws = workload.select(
            mu=table[rows["mu"], kept].T, log_tau=np.log(table[rows["tau"], kept].T),
            group=np.transpose(table[first:first + workload.n_groups, kept], (2, 1, 0)))
    n_leapfrog = table[sampler_names.index("n_leapfrog__")].T.astype(np.int64)
    divergent = table[sampler_names.index("divergent__"), kept].T > 0
    # Stan fixes the step size at the end of warmup: every kept draw of a chain has it.
    step_size = table[sampler_names.index("stepsize__"), config.tune].copy()
    acceptance = table[sampler_names.index("accept_stat__"), kept].T.copy()
    del fit, table
    return RunOutput(draws=draws, n_steps=n_leapfrog[:, config.tune:], diverging=divergent,
                     seconds=seconds, warmup_n_steps=n_leapfrog[:, :config.tune],
                     step_size=step_size, acceptance=acceptance)
