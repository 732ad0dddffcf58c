"""The report of ``benchmarks/compare.py``: markdown tables, goals, notes and a bar chart."""
import datetime
import os
import platform
import shlex
import statistics

from benchmarks import peers, workloads
from uturn.sampling import AUTO_CHECK_QUANTITIES

__all__ = ["render", "bar_chart", "aggregate", "machine", "versions"]

# Issue 6's goals, checked against the measured numbers.
GOAL_SPEEDUP = 10.0          # NC eight schools ESS_bulk/s vs the fastest peer
GOAL_FIRST_CALL_S = 1.0      # first draw of an unseen model
GOAL_LIMIT_RATIO = 2.0       # J = 1,000 and 100,000: time / physical limit
MEMORY_ALLOWANCE_BYTES = 64 * 2**20   # fixed: interpreter, numpy temporaries, checks
#: The O(dim x max_treedepth) term: this many float64 vectors of length dim per tree
#: level (max_treedepth 10: 11 levels) for every chain running at once. uturn's NUTS
#: workspace is 5 per level plus 20 (`nuts_workspace`).
MEMORY_VECTORS_PER_LEVEL = 8
MAX_TREEDEPTH = 10


def memory_allowance(workload, config):
    """Bytes the memory goal allows beyond the stored draws."""
    running = min(config.chains, config.cores)
    per_chain = MEMORY_VECTORS_PER_LEVEL * (MAX_TREEDEPTH + 1) * workload.dim * 8
    return MEMORY_ALLOWANCE_BYTES + running * per_chain


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _stats_of_runs(runs, key):
    return [run[key] for run in runs]


def aggregate(result, gradient_ns, exact, config):
    """Medians (and ranges) over the repeats of one sampler on one workload.

    Parameters
    ----------
    result : benchmarks.compare.SamplerResult
    gradient_ns : float or None
        Bare cost of one uturn ``logp_grad`` call.
    exact : float
        Exact posterior mean of the quantity of interest.
    config : benchmarks.peers.RunConfig

    Returns
    -------
    dict or None
        None when there is no completed run.
    """
    runs = result.runs
    if not runs or result.skipped:
        return None
    seconds = _stats_of_runs(runs, "seconds")
    warmup = [None if r["gradients_warmup"] is None
              else r["gradients_warmup"] + (r["gradients_extra"] or 0) for r in runs]
    total = [None if w is None else w + r["gradients_sampling"] for w, r in zip(warmup, runs)]
    parallel = min(config.chains, config.cores)
    limits = [None if t is None or gradient_ns is None else gradient_ns * 1e-9 * t / parallel
              for t in total]
    return {
        "seconds": _median(seconds), "seconds_min": min(seconds), "seconds_max": max(seconds),
        "ess_bulk": _median(_stats_of_runs(runs, "ess_bulk")),
        "ess_tail": _median(_stats_of_runs(runs, "ess_tail")),
        "min_ess_bulk": _median(_stats_of_runs(runs, "min_ess_bulk")),
        "min_ess_tail": _median(_stats_of_runs(runs, "min_ess_tail")),
        "ess_per_s": _median([r["ess_bulk"] / r["seconds"] for r in runs]),
        "ess_per_s_all": [r["ess_bulk"] / r["seconds"] for r in runs],
        "ess_per_1k": _median([1000.0 * r["ess_bulk"] / r["gradients_sampling"]
                               for r in runs]),
        "gradients_sampling": _median(_stats_of_runs(runs, "gradients_sampling")),
        "gradients_warmup": _median(warmup),
        "gradients_total": _median(total),
        "limit_seconds": _median(limits),
        "limit_ratio": _median([None if lim is None else r["seconds"] / lim
                                for lim, r in zip(limits, runs)]),
        "divergences": _stats_of_runs(runs, "divergences"),
        "z": [(r["mean"] - exact) / r["mcse"] for r in runs],
        "peak_bytes": max(_stats_of_runs(runs, "peak_bytes")),
        "increase_bytes": max(r["peak_bytes"] - r["baseline_bytes"] for r in runs),
        "memory_polled": all(_stats_of_runs(runs, "memory_polled")),
        "arviz_rel_diff": max((abs(r["arviz_ess_bulk"] - r["ess_bulk"]) / r["ess_bulk"]
                               for r in runs if r["arviz_ess_bulk"] is not None),
                              default=None),
        "repeats": len(runs),
    }


def _fmt(value, digits=3):
    """Significant digits for timings and rates; n/a for unknowns."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _fmt_int(value):
    return "n/a" if value is None else f"{value:,.0f}"


def _mb(value):
    return f"{value / 2**20:,.0f}"


def _first_call_cell(result):
    first = result.first_call
    if first is None:
        return "–"
    if "skipped" in first:
        return "failed"
    return _fmt(first["seconds"])


COLUMNS = ("sampler", "first call (s)", "sampling time (s): median (min–max)",
           "ESS_bulk {q}", "ESS_tail {q}", "min ESS bulk / tail", "ESS_bulk/s",
           "ESS per 1k grad", "gradients: warmup + sampling", "time / own limit",
           "divergences", "E[{q}] error (MCSE)", "peak MB (+ over baseline)")


def _row(name, agg, result):
    z = ", ".join(f"{v:+.1f}" for v in agg["z"])
    return [
        name, _first_call_cell(result),
        f"{_fmt(agg['seconds'])} ({_fmt(agg['seconds_min'])}–{_fmt(agg['seconds_max'])})",
        _fmt_int(agg["ess_bulk"]), _fmt_int(agg["ess_tail"]),
        f"{_fmt_int(agg['min_ess_bulk'])} / {_fmt_int(agg['min_ess_tail'])}",
        _fmt(agg["ess_per_s"]), _fmt(agg["ess_per_1k"]),
        f"{_fmt_int(agg['gradients_warmup'])} + {_fmt_int(agg['gradients_sampling'])}",
        "n/a" if agg["limit_ratio"] is None else f"{agg['limit_ratio']:.1f}×",
        ", ".join(str(d) for d in agg["divergences"]), z,
        f"{_mb(agg['peak_bytes'])} (+{_mb(agg['increase_bytes'])})",
    ]


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _workload_section(name, measured, config):
    workload = workloads.get(name)
    q = workload.quantity
    gradient_ns = measured["gradient_ns"]
    header = [c.format(q=q) for c in COLUMNS]
    rows, skipped, aggs = [], [], {}
    for sampler, result in measured["results"].items():
        agg = aggregate(result, gradient_ns, measured["exact"], config)
        if agg is None:
            skipped.append(f"- {sampler}: skipped: {result.skipped or 'no completed run'}")
            continue
        aggs[sampler] = agg
        rows.append(_row(sampler, agg, result))
    uturn = aggs.get("uturn")
    if uturn and uturn["limit_seconds"]:
        # uturn's ESS at the speed of bare gradient work: what the limit would deliver.
        rows.append(["**physical limit**", "–", _fmt(uturn["limit_seconds"]), "", "", "",
                     _fmt(uturn["ess_bulk"] / uturn["limit_seconds"]), "",
                     f"{_fmt_int(uturn['gradients_total'])} (uturn's, total)", "1.0×", "", "",
                     ""])
    exact = measured["exact"]
    lines = [f"### {name}: {workload.description}", "",
             f"Quantity of interest `{q}`, exact E[{q}] = {exact:.10g}; "
             f"{workloads.describe_monitoring(workload)}. Bare `logp_grad` of uturn's model: "
             + (f"{gradient_ns:,.1f} ns" if gradient_ns else "n/a") + ".", ""]
    lines.append(_table(header, rows) if rows else "_No sampler completed a run._")
    if skipped:
        lines += ["", "Skipped:", *skipped]
    first_calls = [_first_call_line(s, r.first_call) for s, r in measured["results"].items()
                   if r.first_call]
    if first_calls:
        lines += ["", "First call (the fastest of several fresh processes, interleaved "
                  "across samplers; empty model caches, Python's bytecode cache on as on a "
                  "user's machine):", *first_calls]
        floor = measured.get("numba_floor")
        if floor:
            lines.append(f"- numba alone: {floor:.2f} s (best of 3 fresh processes that "
                         f"import numpy and numba, then compile and call a one-line "
                         f"`@numba.njit` function: the least any numba sampler's first "
                         f"call takes on this machine)")
    notes = [f"- {s}: {note}" for s, r in measured["results"].items() for note in r.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines), aggs


def _first_call_line(sampler, first):
    if "skipped" in first:
        return f"- {sampler}: failed: {first['skipped']}"
    start_up = first["seconds"] - first["build_seconds"] - first["sample_seconds"]
    attempts = first.get("all", [])
    each = (f" (fastest of {len(attempts)}: " + ", ".join(f"{t:.2f}" for t in attempts) + ")"
            if len(attempts) > 1 else "")
    return (f"- {sampler}: {first['seconds']:.2f} s{each} = {start_up:.2f} s interpreter start "
            f"+ {first['build_seconds']:.2f} s import, build and compile + "
            f"{first['sample_seconds']:.2f} s first sampling run")


def _verdict(ok):
    return "**met**" if ok else "**not met**"


#: uturn's non-default variants in the report: (the setting each changes, its short
#: name in the goal lines).
VARIANTS = {"uturn_grad": ('metric="diag_grad"', "diag_grad"),
            "uturn_first": ('step_size_restart="first_window"', "first_window")}


def _is_uturn(sampler):
    """uturn itself or one of its non-default variants (``VARIANTS``): not a peer."""
    return sampler.startswith("uturn")


def _goals(all_aggs, measured):
    """Issue 6's goals as a checklist with what was measured. The goals are judged on
    uturn's defaults; the variants' standing (``VARIANTS``) is given beside them."""
    lines = ["## Goals (issue 6)", ""]

    # 1. ESS/s on NC eight schools: 10x the fastest peer.
    aggs = all_aggs.get("eight_schools_nc", {})
    peer_rates = {s: a["ess_per_s"] for s, a in aggs.items() if not _is_uturn(s)}
    if "uturn" in aggs and peer_rates:
        best = max(peer_rates, key=peer_rates.get)
        ratio = aggs["uturn"]["ess_per_s"] / peer_rates[best]
        variant = "".join(
            f" (with {setting}: {aggs[name]['ess_per_s']:,.0f}/s, "
            f"{aggs[name]['ess_per_s'] / peer_rates[best]:.2g}×)"
            for name, (setting, _) in VARIANTS.items() if name in aggs)
        lines.append(f"- [{'x' if ratio >= GOAL_SPEEDUP else ' '}] NC eight schools "
                     f"ESS_bulk(log_tau)/s ≥ {GOAL_SPEEDUP:.0f}× the fastest peer: uturn "
                     f"{aggs['uturn']['ess_per_s']:,.0f}/s, fastest peer {best} "
                     f"{peer_rates[best]:,.0f}/s: {ratio:.2g}×{variant} — "
                     f"{_verdict(ratio >= GOAL_SPEEDUP)}")
    else:
        lines.append(f"- [ ] NC eight schools ESS_bulk/s ≥ {GOAL_SPEEDUP:.0f}× the fastest "
                     f"peer: not measured (needs uturn and a peer on eight_schools_nc)")

    # 2. ESS per 1,000 gradients >= best peer, per workload.
    parts, all_ok = [], True
    for name, aggs in all_aggs.items():
        peer_values = {s: a["ess_per_1k"] for s, a in aggs.items() if not _is_uturn(s)}
        if "uturn" not in aggs or not peer_values:
            continue
        best = max(peer_values, key=peer_values.get)
        ok = aggs["uturn"]["ess_per_1k"] >= peer_values[best]
        all_ok &= ok
        variant = "".join(f", {short} {aggs[name]['ess_per_1k']:.3g}"
                          for name, (_, short) in VARIANTS.items() if name in aggs)
        parts.append(f"{name}: {aggs['uturn']['ess_per_1k']:.3g}{variant} vs {best} "
                     f"{peer_values[best]:.3g} ({'≥' if ok else '<'})")
    if parts:
        lines.append(f"- [{'x' if all_ok else ' '}] ESS_bulk per 1,000 gradients ≥ best peer: "
                     + "; ".join(parts) + f" — {_verdict(all_ok)}")
    else:
        lines.append("- [ ] ESS per 1,000 gradients ≥ best peer: not measured")

    # 3. First draw < 1 s.
    firsts = {name: m["results"]["uturn"].first_call for name, m in measured.items()
              if "uturn" in m["results"] and m["results"]["uturn"].first_call
              and "seconds" in m["results"]["uturn"].first_call}
    if firsts:
        ok = all(f["seconds"] < GOAL_FIRST_CALL_S for f in firsts.values())
        shown = "; ".join(
            f"{n}: {f['seconds']:.2f} s" + (f" (numba alone: {measured[n]['numba_floor']:.2f} s)"
                                            if measured[n].get("numba_floor") else "")
            for n, f in firsts.items())
        lines.append(f"- [{'x' if ok else ' '}] First draw of an unseen model < "
                     f"{GOAL_FIRST_CALL_S:.0f} s (sampler cached; fresh process, import "
                     f"included): {shown} — {_verdict(ok)}")
    else:
        lines.append("- [ ] First draw of an unseen model < 1 s: not measured")

    # 4. Within 2x of the physical limit at J = 1,000 and 100,000.
    parts, ratios = [], []
    for name in ("hier_nc_1000", "hier_nc_100000"):
        agg = all_aggs.get(name, {}).get("uturn")
        if agg is None or agg["limit_ratio"] is None:
            parts.append(f"{name}: not measured")
            continue
        ratios.append(agg["limit_ratio"])
        parts.append(f"{name}: {agg['limit_ratio']:.1f}×")
    ok = len(ratios) == 2 and max(ratios) <= GOAL_LIMIT_RATIO
    verdict = _verdict(ok) if ratios else "**not measured**"
    if ratios and len(ratios) < 2 and max(ratios) <= GOAL_LIMIT_RATIO:
        verdict = "**met where measured**"
    lines.append(f"- [{'x' if ok else ' '}] J = 1,000 and 100,000 within "
                 f"{GOAL_LIMIT_RATIO:.0f}× of the physical limit: " + "; ".join(parts)
                 + f" — {verdict}")

    # 5. Memory: stored draws plus O(dim x max_treedepth).
    parts, all_ok = [], True
    for name, aggs in all_aggs.items():
        agg = aggs.get("uturn")
        if agg is None:
            continue
        workload = workloads.get(name)
        stored = workloads.bytes_of_draws(workload, measured[name]["config"].chains,
                                          measured[name]["config"].draws)
        allowance = memory_allowance(workload, measured[name]["config"])
        ok = agg["increase_bytes"] <= stored + allowance
        all_ok &= ok
        parts.append(f"{name}: +{_mb(agg['increase_bytes'])} MB for "
                     f"{_mb(stored)} MB of draws (allowed {_mb(stored + allowance)})")
    if parts:
        lines.append(f"- [{'x' if all_ok else ' '}] Memory ≤ stored draws + O(dim × "
                     f"max_treedepth) (taken as draws + {_mb(MEMORY_ALLOWANCE_BYTES)} MB + "
                     f"{MEMORY_VECTORS_PER_LEVEL} × (max_treedepth + 1) float64 vectors of "
                     f"length dim per chain running at once; peak RSS increase over the "
                     f"worker after build and warm-up run): "
                     + "; ".join(parts) + f" — {_verdict(all_ok)}")
    return "\n".join(lines)


def machine():
    """CPU model, logical cores and RAM of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    ram_text = f"{ram / 2**30:.1f} GiB RAM" if ram else "RAM unknown"
    return f"{cpu}, {os.cpu_count()} logical cores, {ram_text}, {platform.system()}"


def versions(samplers):
    """``name version`` of python, the core stack and every selected peer's packages."""
    names = ["numpy", "scipy", "numba", "uturn", "arviz", "psutil", "matplotlib"]
    for sampler in samplers:
        names += [n for n in peers.load(sampler).VERSIONS if n not in names]
    parts = [f"python {platform.python_version()}"]
    parts += [f"{n} {peers.package_version(n) or 'not installed'}" for n in names]
    return ", ".join(parts)


def _notes(args, config, all_aggs, measured):
    lines = ["## Notes", ""]
    lines.append(f"- Settings: {config.chains} chains × ({config.tune} warmup + "
                 f"{config.draws} draws), {args.repeats} timed repeats after one untimed "
                 f"warm-up run per sampler, seeds {args.seed}..{args.seed + args.repeats - 1} "
                 f"(the same for every sampler; PyStan's cached fits are deleted before each "
                 f"run), repeats interleaved across samplers; up to {config.cores} chains at "
                 f"once where the sampler has the option; {args.timeout:.0f} s limit per "
                 f"build and per run.")
    lines.append("- Sampling time is the `sample`/`run` call alone on a built, compiled, "
                 "warmed-up model (warmup + draws + the sampler's own conversion of its "
                 "output). First call: a fresh process (interpreter start, imports, build, "
                 "compile, first sampling run; wall clock until the first run returned), "
                 "with the peer's on-disk model caches empty (httpstan: a new "
                 "`XDG_CACHE_HOME`; PyMC/nutpie: a new pytensor compile directory and numba "
                 "cache, first filled by an unrelated model so that only this model is new); "
                 "uturn keeps its numba cache, which holds the sampler and never a model. "
                 "Measured on: " + (", ".join(_first_call_workloads_run(measured)) or "none")
                 + ".")
    lines.append("- Every statistic comes from `uturn.diagnostics` (rank-normalised ESS, "
                 "MCSE) on the sampler's draws in uturn's unconstrained coordinates "
                 "(`log_tau = log(tau)` from every peer), computed in the worker. "
                 "E[q] error = (mean − exact) / MCSE, one value per repeat. "
                 "Medians over the repeats unless a range is shown.")
    diffs = [a["arviz_rel_diff"] for aggs in all_aggs.values() for a in aggs.values()
             if a["arviz_rel_diff"] is not None]
    if diffs:
        lines.append(f"- Cross-check: ArviZ `ess(method=\"bulk\")` on the same draws differs "
                     f"from uturn's ESS_bulk by at most {max(diffs):.1e} (relative) over "
                     f"all {sum(a['repeats'] for aggs in all_aggs.values() for a in aggs.values())}"
                     f" runs.")
    else:
        lines.append("- Cross-check with ArviZ: not done (arviz not installed).")
    lines.append("- Gradients = leapfrog steps: Stan `n_leapfrog__` (save_warmup=True), "
                 "nutpie and PyMC `n_steps` (warmup stats kept), NumPyro `num_steps` "
                 "(`extra_fields`, warmup collected separately), BlackJAX "
                 "`num_integration_steps` (window-adaptation info for warmup), uturn "
                 "`n_steps`. Warmup counts of the peers cover warmup transitions only; "
                 "uturn's also include its step-size searches (`n_gradient_evals`). "
                 "ESS per 1k gradients uses the sampling phase only.")
    lines.append("- Physical limit = bare `logp_grad` time of uturn's model (best of "
                 "several ~0.1 s loops through the sampler's function type, no Python) × "
                 "gradients (warmup + sampling, all chains) ÷ min(chains, cores). Each "
                 "sampler's `time / own limit` uses its own gradient count, so it measures "
                 "overhead above pure gradient work of uturn's model (a peer whose own "
                 "gradient is slower shows that too). The limit row uses uturn's count.")
    polled = _memory_polled(all_aggs)
    lines.append("- Peak memory: RSS of the worker and its child processes (PyStan and "
                 "PyMC sample in children), polled every 10 ms during the run, plus the "
                 "worker's own `ru_maxrss` when it rose; `+` is the increase over the "
                 "worker after imports, build and the warm-up run (everything compiled)."
                 if polled else
                 "- Peak memory: the worker's `ru_maxrss` only (psutil not installed): a "
                 "lifetime peak, so `+` is only what a run added above the peak after the "
                 "warm-up run, and children (PyStan, PyMC chains) are not counted.")
    for sampler in args.samplers:
        try:
            lines.append(f"- {sampler}: {peers.load(sampler).settings(config)}.")
        except Exception:           # a peer module that cannot even describe itself
            continue
    lines.append("- Fairness fixes: NumPyro's stock `chain_method=\"parallel\"` "
                 "recompiles at every run (a new `functools.partial` under `jax.pmap`), "
                 "so it runs with a chain method that pmaps the same function once "
                 "(identical draws); the time of one stock run is in the workload's notes. "
                 "nutpie converts its trace to an ArviZ InferenceData by default, Python "
                 "work after sampling (on eight schools up to half of a stock call), so "
                 "it runs with `return_raw_trace=True` and its draws are read from the "
                 "Arrow trace into numpy inside the timed run (identical draws, tested); "
                 "a stock call's time is in the workload's notes. uturn checks its fit "
                 "by default once the chains are done (R-hat and ESS of up to "
                 f"{AUTO_CHECK_QUANTITIES} quantities, divergences, tree depth, "
                 "E-BFMI), Python work after sampling that no peer's timed run does (PyMC's is switched off), so it "
                 "runs with `checks=False` (identical draws, tested); a stock call's time "
                 "is in the workload's notes. PyStan needs "
                 "`save_warmup=True` for warmup gradient counts, so httpstan "
                 "also ships the warmup draws as JSON: this is inside its sampling time. "
                 "The same model code is given to each peer in its own idiom (Stan "
                 "`multi_normal_cholesky`, PyMC `MvNormal(chol=...)`, NumPyro "
                 "`MultivariateNormal(scale_tril=...)`; BlackJAX's hand-written density "
                 "uses uturn's precision-matrix form).")
    return "\n".join(lines)


def _first_call_workloads_run(measured):
    return [name for name, m in measured.items()
            if any(r.first_call for r in m["results"].values())]


def _memory_polled(all_aggs):
    return all(a["memory_polled"] for aggs in all_aggs.values() for a in aggs.values())


def render(measured, args, config, elapsed):
    """The whole report as markdown.

    Parameters
    ----------
    measured : dict
        ``{workload name: benchmarks.compare.bench_workload(...)}``.
    args : argparse.Namespace
    config : benchmarks.peers.RunConfig
    elapsed : float
        Wall time of the whole comparison (s).
    """
    for m in measured.values():
        m["config"] = config
    command = "python -m benchmarks.compare" + "".join(" " + shlex.quote(a)
                                                      for a in args.argv)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# uturn against its peers (issue 6)", "",
             f"- Command: `{command}` ({elapsed / 60:.1f} min)",
             f"- Date: {now}",
             f"- Machine: {machine()}",
             f"- Versions: {versions(args.samplers)}", ""]
    if args.quick:
        lines += ["_Quick smoke run: settings too small for conclusions._", ""]
    sections, all_aggs = [], {}
    for name, m in measured.items():
        text, aggs = _workload_section(name, m, config)
        sections.append(text)
        all_aggs[name] = aggs
    lines.append("\n\n".join(sections))
    lines += ["", _goals(all_aggs, measured), "", _notes(args, config, all_aggs, measured), ""]
    return "\n".join(lines)


def bar_chart(measured, path):
    """Log-scale bars of ESS_bulk/s (median, min–max whiskers) per sampler per workload.

    Returns the path written, or None without matplotlib or without any result.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    names = list(measured)
    samplers = [s for s in peers.SAMPLERS
                if any(m["results"].get(s) and m["results"][s].runs
                       and not m["results"][s].skipped for m in measured.values())]
    if not samplers:
        return None
    width = 0.8 / len(samplers)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(names) + 2), 4.5))
    for k, sampler in enumerate(samplers):
        medians, low, high = [], [], []
        for name in names:
            result = measured[name]["results"].get(sampler)
            rates = ([r["ess_bulk"] / r["seconds"] for r in result.runs]
                     if result and result.runs and not result.skipped else [])
            if rates:
                medians.append(statistics.median(rates))
                low.append(medians[-1] - min(rates))
                high.append(max(rates) - medians[-1])
            else:
                medians.append(np.nan)
                low.append(0.0)
                high.append(0.0)
        x = np.arange(len(names)) + (k - (len(samplers) - 1) / 2) * width
        ax.bar(x, medians, width, yerr=[low, high], capsize=2, label=sampler)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=15)
    ax.set_ylabel("ESS_bulk/s of log tau (x[0] for the Gaussian)")
    ax.set_title("ESS_bulk per second: median, whiskers min–max of the repeats",
                 fontsize="medium")
    ax.legend(fontsize="small", ncol=min(len(samplers), 3))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
