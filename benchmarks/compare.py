"""uturn against Stan, nutpie, BlackJAX, NumPyro and PyMC: same models, same machine, one run.

    python -m benchmarks.compare                        # everything (see --help; long)
    python -m benchmarks.compare --workloads eight_schools_nc --repeats 3
    python -m benchmarks.compare --quick --samplers uturn   # smoke run, seconds
    python benchmarks/compare.py ...                    # the same

Peers come from ``pip install -e ".[bench]"``; a missing one is reported as skipped.
If that environment has another numba version than the one you develop with, give it
its own ``NUMBA_CACHE_DIR``: numba keeps one cache entry per function, and two versions
would overwrite each other's (each then recompiling uturn's sampler).

How it measures (the report's notes say the same):

* one long-lived worker process per (sampler, workload) ("spawn" context, so each
  sets its own environment, e.g. ``XLA_FLAGS``, before importing its packages, and
  no two share memory or threads); each builds and compiles its model once and does
  one untimed warm-up run;
* then the timed repeats are interleaved across samplers (repeat 1: uturn, stan, ...;
  repeat 2: ...), each repeat with its own seed, the same for every sampler, so
  that the noise of a shared machine hits all samplers alike;
* the workers compute every statistic with ``uturn.diagnostics`` and send back
  numbers only;
* first-call time: a fresh process with the peer's model caches emptied (import,
  build, compile and one sampling run), by default on ``eight_schools_nc`` only.
"""
import argparse
import json
import multiprocessing
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository root importable instead of benchmarks/
    # (whose module names, e.g. models.py, must not shadow anything).
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness, peers, report, workloads  # noqa: E402
from benchmarks.peers import RunConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks"
WARMUP_SEED = 987_654       # the untimed warm-up run; timed repeats use seed, seed + 1, ...
FIRST_CALL_SEED = 424_242
GRADIENT_REPEATS = 7


class Worker:
    """A worker process for one (sampler, workload), driven over a pipe."""

    def __init__(self, sampler, workload, config, log_path):
        context = multiprocessing.get_context("spawn")
        self.sampler = sampler
        self.log_path = log_path
        self.conn, child = context.Pipe()
        # Not daemonic: PyMC starts its own chain processes, which daemons may not.
        self.process = context.Process(
            target=harness.worker_main,
            args=(child, sampler, workload, config, log_path,
                  multiprocessing.get_start_method()),
            name=f"bench-{sampler}-{workload.name}")
        self.process.start()
        child.close()

    def receive(self, timeout):
        """``(kind, payload)``: kind is ready / result / error / timeout / died."""
        if not self.conn.poll(timeout):
            self.kill()
            return "timeout", f"no answer within the {timeout:.0f} s limit"
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            code = self.process.exitcode
            why = " (killed: out of memory?)" if code == -signal.SIGKILL else ""
            return "died", f"worker process exited with code {code}{why}"

    def call(self, command, timeout):
        self.conn.send(command)
        return self.receive(timeout)

    def stop(self):
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(30)
        self.kill()

    def kill(self):
        """Kill the worker and whatever is left of its children (it made itself a
        process group leader, so the group outlives it while a child lives)."""
        if self.process.pid:
            _kill_group(self.process.pid)
            if self.process.exitcode is None:
                self.process.kill()
            self.process.join(10)


class SamplerResult:
    """Everything measured for one sampler on one workload."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.runs = []              # stats dicts from harness.summarize, one per repeat
        self.skipped = None         # reason, when the sampler has no (complete) result
        self.build_seconds = None
        self.baseline_bytes = None
        self.notes = []
        self.first_call = None      # dict from first_call(), or {"skipped": reason}

    def skip(self, reason):
        self.skipped = reason


_STARTED = time.time()


def _log(message):
    """Progress on stderr, with the time since start (stdout gets the report)."""
    minutes, seconds = divmod(int(time.time() - _STARTED), 60)
    print(f"{minutes:3d}:{seconds:02d} {message}", file=sys.stderr, flush=True)


def _failure_reason(kind, payload, worker):
    first_line = str(payload).strip().splitlines()[0] if payload else kind
    return f"{kind}: {first_line} (log: {worker.log_path})"


def _start_worker(sampler, workload, config, timeout, log_dir):
    """Start, build and warm up one worker: ``(worker, None)`` or ``(None, reason)``."""
    log_path = os.path.join(log_dir, f"{workload.name}-{sampler}.log")
    worker = Worker(sampler, workload, config, log_path)
    kind, payload = worker.receive(timeout)
    if kind != "ready":
        worker.kill()
        return None, "build failed, " + _failure_reason(kind, payload, worker), None
    kind, warmup = worker.call(("run", WARMUP_SEED), timeout)
    if kind != "result":
        worker.kill()
        return None, "warm-up run failed, " + _failure_reason(kind, warmup, worker), None
    kind, baseline = worker.call(("baseline",), timeout)
    if kind == "result":
        payload["baseline_bytes"] = baseline
    return worker, None, payload


def _gradient_cost(workers, workload, config, timeout, log_dir):
    """Bare logp_grad ns of uturn's model, from the uturn worker (or a temporary one)."""
    worker = workers.get("uturn")
    temporary = None
    if worker is None:
        log_path = os.path.join(log_dir, f"{workload.name}-uturn-gradient.log")
        worker = temporary = Worker("uturn", workload, config, log_path)
        kind, payload = worker.receive(timeout)
        if kind != "ready":
            worker.kill()
            return None
    kind, payload = worker.call(("gradient_ns", GRADIENT_REPEATS), timeout)
    if temporary is not None:
        temporary.stop()
    return payload if kind == "result" else None


def bench_workload(workload, samplers, config, args, log_dir):
    """Build, warm up and time every sampler on ``workload``, repeats interleaved.

    Returns
    -------
    dict
        ``{"results": {sampler: SamplerResult}, "gradient_ns": float or None,
        "exact": float}``
    """
    results = {s: SamplerResult(s) for s in samplers}
    workers = {}
    try:
        for sampler in samplers:
            missing = peers.missing_packages(sampler)
            if missing:
                results[sampler].skip(f"not installed ({', '.join(missing)}): "
                                      f"pip install -e \".[bench]\"")
                continue
            reason = peers.load(sampler).skip_reason(workload, config, args.full)
            if reason:
                results[sampler].skip(reason)
                continue
            _log(f"[{workload.name}] {sampler}: build and warm-up run")
            worker, reason, ready = _start_worker(sampler, workload, config, args.timeout,
                                                  log_dir)
            if worker is None:
                results[sampler].skip(reason)
                continue
            results[sampler].build_seconds = ready["build_seconds"]
            results[sampler].baseline_bytes = ready["baseline_bytes"]
            kind, notes = worker.call(("notes", WARMUP_SEED + 1), args.timeout)
            if kind == "result":
                results[sampler].notes.extend(notes)
            elif kind in ("timeout", "died"):
                results[sampler].skip("extra measurement failed, "
                                      + _failure_reason(kind, notes, worker))
                worker.kill()
                continue
            workers[sampler] = worker

        gradient_ns = _gradient_cost(workers, workload, config, args.timeout, log_dir)

        for repeat in range(args.repeats):
            seed = args.seed + repeat
            for sampler in list(workers):
                _log(f"[{workload.name}] repeat {repeat + 1}/{args.repeats}: {sampler}")
                kind, payload = workers[sampler].call(("run", seed), args.timeout)
                if kind == "result":
                    results[sampler].runs.append(payload)
                else:
                    results[sampler].skip(f"repeat {repeat + 1} failed, "
                                          + _failure_reason(kind, payload, workers[sampler]))
                    workers.pop(sampler).kill()
    finally:
        for worker in workers.values():
            worker.stop()
    return {"results": results, "gradient_ns": gradient_ns, "exact": workload.exact_mean()}


def _primer_for(workload):
    """An unrelated model to fill a fresh cache with what every model shares."""
    other = "eight_schools_nc" if workload.kind == "gaussian" else "gaussian_dense_100"
    return workloads.get(other)


def _child(sampler, workload, config, seed, env, timeout, log_path, tmp):
    """Run ``harness first-call`` in a fresh process: ``(seconds from start, report)``."""
    workload_path = os.path.join(tmp, f"{workload.name}.pickle")
    with open(workload_path, "wb") as f:
        pickle.dump(workload, f)
    command = [sys.executable, "-m", "benchmarks.harness", "first-call", sampler,
               workload_path, json.dumps(config.__dict__), str(seed)]
    with open(log_path, "a") as log:
        seconds, reported, returncode = _reporting_process(command, env, log, timeout)
    if reported is None:
        raise RuntimeError(f"first-call process failed (exit code {returncode}; "
                           f"log: {log_path})")
    return seconds, reported


def _reporting_process(command, env, stderr, timeout):
    """Run ``command`` in a fresh process until it prints its JSON report:
    ``(seconds from start to the report's "end", report, exit code)``, the first two
    None if it exits without one; raises RuntimeError past ``timeout`` seconds."""
    start = time.time()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=stderr, text=True, start_new_session=True)
    try:
        reported = _read_report(process, start + timeout)
    finally:
        # The report is all we need; samplers' helper processes (httpstan's pool)
        # may outlive the child and keep its stdout open: end the whole group.
        _kill_group(process.pid)
        process.wait()
    if reported is None:
        return None, None, process.returncode
    return reported["end"] - start, reported, process.returncode


def _read_report(process, deadline):
    """The child's JSON report line, or None if it exits without one; raises at the deadline."""
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise RuntimeError("no first draw within the time limit")
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if not readable:
            continue
        line = process.stdout.readline()
        if not line:
            return None
        if line.startswith("{"):
            return json.loads(line)


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


#: Fresh processes per sampler for the first-call time, which is the fastest of them:
#: one process's time moves by 0.2-0.3 s on this shared machine (uturn's 0.85-1.15 s
#: in five processes in a row), and the numba floor it is compared with is a best of 3.
FIRST_CALL_REPEATS = 3


def best_first_call(kept, new):
    """The faster of two :func:`first_call` results, with every attempt's seconds in
    ``"all"`` (a failed attempt is kept only if none succeeded)."""
    attempts = (kept or {}).get("all", []) + ([new["seconds"]] if "seconds" in new else [])
    if kept is None or "seconds" not in kept or ("seconds" in new
                                                 and new["seconds"] < kept["seconds"]):
        best = dict(new)
    else:
        best = dict(kept)
    if attempts:
        best["all"] = attempts
    return best


def first_call(sampler, workload, config, timeout, log_dir):
    """Import + build + compile + first sampling run in a fresh process, wall clock.

    The peer's on-disk model caches point to an empty directory (``fresh_cache_env``);
    peers with ``PRIME_CACHE`` first run an unrelated model there (untimed), so that
    what all models share is cached, as it would be for a user, and only this
    model is new. uturn keeps its numba cache, which holds the sampler and no model.
    """
    peer = peers.load(sampler)
    tmp = tempfile.mkdtemp(prefix=f"uturn-bench-first-call-{sampler}-")
    env = dict(os.environ, **peer.env(config), **peer.fresh_cache_env(tmp))
    # Python's bytecode cache on, as on a user's machine: pip wrote the peers' .pyc at
    # install time, but an editable install (uturn here) gets them only when Python may
    # write them; with PYTHONDONTWRITEBYTECODE set (this sandbox sets it) every start
    # would recompile uturn's sources, ~30 ms that no installed package pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log_path = os.path.join(log_dir, f"first-call-{workload.name}-{sampler}.log")
    try:
        if peer.PRIME_CACHE:
            primer_config = RunConfig(chains=2, tune=100, draws=100, cores=config.cores)
            _child(sampler, _primer_for(workload), primer_config, 1, env, timeout, log_path,
                   tmp)
        seconds, reported = _child(sampler, workload, config, FIRST_CALL_SEED, env, timeout,
                                   log_path, tmp)
    except (RuntimeError, OSError, ValueError) as exc:
        return {"skipped": str(exc)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": seconds, "build_seconds": reported["build_seconds"],
            "sample_seconds": reported["sample_seconds"]}


#: A fresh process that does what every numba program does before its first draw:
#: import numpy and numba, compile one small function, call it.
_NUMBA_FLOOR_SCRIPT = """
import json, time
import numba, numpy

@numba.njit
def first(x):
    return x[0] + 1.0

first(numpy.zeros(2))
print(json.dumps({"end": time.time()}), flush=True)
"""


def numba_floor(timeout, repeats=3):
    """Seconds from process start to the first call of a one-line ``@numba.njit``
    function (best of ``repeats`` fresh processes): the least any numba-compiled
    sampler's first call can take on this machine, model or sampler aside.

    numba's first compilation in a process also loads its typing registries, which
    import scipy.linalg (numba checks for BLAS) when scipy is installed, as it is
    beside uturn; that is counted, as it is in every first call.
    """
    times = []
    for _ in range(repeats):
        try:
            seconds, _, _ = _reporting_process([sys.executable, "-c", _NUMBA_FLOOR_SCRIPT],
                                               None, subprocess.DEVNULL, timeout)
        except RuntimeError:     # past the time limit
            seconds = None
        if seconds is not None:
            times.append(seconds)
    return min(times) if times else None


def _split_names(values, known, what):
    names = [n for value in values for n in value.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from "
                         f"{', '.join(known)})")
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="uturn against Stan, nutpie, BlackJAX, NumPyro and PyMC (issue 6).")
    parser.add_argument("--workloads", nargs="+", default=None,
                        help=f"workloads, space or comma separated (default: all: "
                             f"{', '.join(workloads.WORKLOADS)}; --quick: eight_schools_nc)")
    parser.add_argument("--samplers", nargs="+", default=list(peers.SAMPLERS),
                        help=f"samplers (default: {', '.join(peers.SAMPLERS)})")
    parser.add_argument("--chains", type=int, default=None, help="default 4")
    parser.add_argument("--tune", type=int, default=None, help="warmup per chain (1000)")
    parser.add_argument("--draws", type=int, default=None, help="kept draws per chain (1000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (3)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="chains run at once where the sampler has the option "
                             "(default: all CPUs)")
    parser.add_argument("--seed", type=int, default=1, help="seed of repeat 1 (then +1, ...)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="wall-clock limit (s) of each build and each run (600)")
    parser.add_argument("--first-call", choices=("default", "all", "none"), default=None,
                        help="first-call timing on eight_schools_nc only (default), on "
                             "every workload (all) or none (--quick's default)")
    parser.add_argument("--full", action="store_true",
                        help="also run what is skipped up front as hopeless "
                             "(PyStan and PyMC at J = 100,000)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: eight_schools_nc, 2 chains x (200 + 200), "
                             "2 repeats, no first call; writes nothing unless --out")
    parser.add_argument("--out", default=None,
                        help=f"directory for RESULTS.md and ess_per_second.png "
                             f"(default: {DEFAULT_OUT}; --quick: print only)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.chains = args.chains or (2 if quick else 4)
    args.tune = args.tune if args.tune is not None else (200 if quick else 1000)
    args.draws = args.draws or (200 if quick else 1000)
    args.repeats = args.repeats or (2 if quick else 3)
    args.first_call = args.first_call or ("none" if quick else "default")
    default_workloads = ["eight_schools_nc"] if quick else list(workloads.DEFAULT_WORKLOADS)
    args.workloads = _split_names(args.workloads or default_workloads, workloads.WORKLOADS,
                                  "workloads")
    chosen = _split_names(args.samplers, peers.SAMPLERS, "samplers")
    args.samplers = [s for s in peers.SAMPLERS if s in chosen]     # report order
    if args.out is None and not quick:
        args.out = str(DEFAULT_OUT)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _first_call_workloads(args):
    if args.first_call == "none":
        return []
    if args.first_call == "all":
        return list(args.workloads)
    return [w for w in args.workloads if w == "eight_schools_nc"][:1]


def _keep_logs_if_needed(measured, log_dir):
    """Keep the workers' logs only when a failure message points to them."""
    reasons = [r.skipped or "" for m in measured.values() for r in m["results"].values()]
    reasons += [r.first_call.get("skipped", "") for m in measured.values()
                for r in m["results"].values() if r.first_call]
    if any(log_dir in reason for reason in reasons):
        _log(f"worker logs kept in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)


def main(argv=None):
    """Run the comparison; print the report, and write it under ``--out``.

    Returns
    -------
    dict
        ``{"args", "workloads": {name: bench_workload(...)}, "markdown", "written"}``.
    """
    args = parse_args(argv)
    config = RunConfig(chains=args.chains, tune=args.tune, draws=args.draws, cores=args.cores)
    log_dir = tempfile.mkdtemp(prefix="uturn-bench-logs-")
    measured = {}
    started = time.time()
    for name in args.workloads:
        workload = workloads.get(name)
        measured[name] = bench_workload(workload, args.samplers, config, args, log_dir)
    for name in _first_call_workloads(args):
        # Not installed, hopeless or failed: nothing to time.
        timed = [(s, r) for s, r in measured[name]["results"].items() if not r.skipped]
        for attempt in range(FIRST_CALL_REPEATS):  # interleaved, as the timed repeats
            for sampler, result in timed:
                _log(f"[{name}] {sampler}: first call in a fresh process "
                     f"({attempt + 1}/{FIRST_CALL_REPEATS})")
                result.first_call = best_first_call(
                    result.first_call, first_call(sampler, workloads.get(name), config,
                                                  args.timeout, log_dir))
        _log(f"[{name}] numba alone: first call of a one-line function, fresh processes")
        measured[name]["numba_floor"] = numba_floor(args.timeout)
    elapsed = time.time() - started
    _keep_logs_if_needed(measured, log_dir)
    markdown = report.render(measured, args, config, elapsed)
    print(markdown)
    written = []
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        chart = report.bar_chart(measured, out / "ess_per_second.png")
        if chart:
            markdown += f"\n![ESS_bulk per second]({chart.name})\n"
        (out / "RESULTS.md").write_text(markdown)
        written = [out / "RESULTS.md"] + ([chart] if chart else [])
        _log("wrote " + ", ".join(str(p) for p in written))
    return {"args": args, "workloads": measured, "markdown": markdown, "written": written}


if __name__ == "__main__":
    main()
