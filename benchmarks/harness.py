"""Worker side of ``benchmarks/compare.py``: one process per (sampler, workload).

A worker builds its sampler's model once, then answers commands from the
orchestrator over a pipe:

* ``("run", seed)`` -> ``("result", stats)``: one timed sampling run; the worker
  computes every statistic itself (with :mod:`uturn.diagnostics`, the same code for
  every sampler) and sends back only numbers, never draws (3.2 GB at J = 100,000);
* ``("gradient_ns", repeats)`` -> ``("result", ns)``: uturn only, the bare
  ``logp_grad`` cost;
* ``("notes", seed)`` -> ``("result", [str])``: what the peer measures about itself
  beyond the runs (``extra_notes``, optional);
* ``("baseline",)`` -> ``("result", bytes)``: resident memory now, the baseline of
  later runs' memory increase (sent after the warm-up run, when everything is
  compiled);
* ``("stop",)``.

Errors come back as ``("error", message)``. ``python -m benchmarks.harness
first-call ...`` is the fresh process of the first-call measurement.

This module imports only numpy and the standard library at the top, so that a
first-call process pays for nothing but its own sampler.
"""
import ctypes
import gc
import json
import os
import pickle
import resource
import sys
import threading
import time
import traceback

import numpy as np

from benchmarks import peers

__all__ = ["worker_main", "summarize", "MemoryMonitor", "first_call_main"]

_POLL_SECONDS = 0.01
# Listing the children walks /proc (about 1.2 ms, much of it holding the GIL): done
# every 0.5 s only, or a 20 ms run lost a tenth of a core to its own measurement.
# Children (PyStan's and PyMC's samplers) live for seconds; the worker itself is read
# at every poll (17 us).
_CHILDREN_POLL_EVERY = 50


def _psutil():
    try:
        import psutil
        return psutil
    except ImportError:
        return None


def _rss_bytes(process):
    try:
        return process.memory_info().rss
    except Exception:
        return 0


def _tree_rss_bytes(process):
    """Resident memory of ``process`` and all its descendants (PyStan and PyMC sample
    in child processes)."""
    total = 0
    try:
        members = [process] + process.children(recursive=True)
    except Exception:       # the process tree changes under us: count what we can
        members = [process]
    for member in members:
        try:
            total += member.memory_info().rss
        except Exception:
            pass
    return total


def _self_maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


class MemoryMonitor:
    """Peak resident memory of this process tree while a block runs.

    With psutil, a thread polls the RSS of the worker and its children every 10 ms;
    the worker's own ``ru_maxrss`` also counts when it rose during the block (it
    catches spikes between polls). Without psutil only ``ru_maxrss`` is available,
    which is the lifetime peak of the worker alone.
    """

    def __init__(self):
        self.psutil = _psutil()
        self.process = self.psutil.Process() if self.psutil else None
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None

    def current(self):
        """Resident bytes of the tree now (the worker's peak so far without psutil)."""
        return _tree_rss_bytes(self.process) if self.process else _self_maxrss_bytes()

    def _poll(self):
        # The children as __enter__ found them, before the timed block: the first
        # walk of /proc inside the block comes after _CHILDREN_POLL_EVERY polls, so a
        # run of a few ms is not slowed by its own measurement.
        polls, children = 1, self._children_before
        while not self._stop.wait(_POLL_SECONDS):
            if polls % _CHILDREN_POLL_EVERY == 0:
                children = _tree_rss_bytes(self.process) - _rss_bytes(self.process)
            polls += 1
            self.peak = max(self.peak, _rss_bytes(self.process) + children)

    def __enter__(self):
        self._maxrss_before = _self_maxrss_bytes()
        self.peak = self.current()
        if self.process:
            self._children_before = self.peak - _rss_bytes(self.process)
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, self.current())
        maxrss = _self_maxrss_bytes()
        if maxrss > self._maxrss_before:
            self.peak = max(self.peak, maxrss)
        return False


def _arviz_ess_bulk(values):
    try:
        import arviz
    except ImportError:
        return None
    return float(arviz.ess(values, method="bulk"))


def summarize(output, workload):
    """Statistics of one run, computed the same way for every sampler.

    Parameters
    ----------
    output : benchmarks.peers.RunOutput
    workload : benchmarks.workloads.Workload

    Returns
    -------
    dict
        ``seconds``; ``ess_bulk``, ``ess_tail``, ``mean``, ``mcse`` of the quantity
        of interest; ``min_ess_bulk``, ``min_ess_tail`` over the monitored
        coordinates; ``divergences``; ``gradients_sampling``,
        ``gradients_warmup`` (None when the peer does not report them),
        ``gradients_extra`` (step-size searches, None when unknown);
        ``arviz_ess_bulk`` (None without ArviZ).
    """
    from uturn.diagnostics import ess_bulk, ess_tail, mcse_mean

    draws = output.draws
    quantity = np.ascontiguousarray(draws[:, :, workload.quantity_index])
    bulk = [ess_bulk(draws[:, :, k]) for k in range(draws.shape[2])]
    tail = [ess_tail(draws[:, :, k]) for k in range(draws.shape[2])]
    warmup = output.warmup_n_steps
    return {
        "seconds": float(output.seconds),
        "ess_bulk": float(bulk[workload.quantity_index]),
        "ess_tail": float(tail[workload.quantity_index]),
        "mean": float(quantity.mean()),
        "mcse": float(mcse_mean(quantity)),
        "min_ess_bulk": float(np.nanmin(bulk)),
        "min_ess_tail": float(np.nanmin(tail)),
        "divergences": int(np.sum(output.diverging)),
        "gradients_sampling": int(np.sum(output.n_steps)),
        "gradients_warmup": None if warmup is None else int(np.sum(warmup)),
        "gradients_extra": output.extra_warmup_gradients,
        "arviz_ess_bulk": _arviz_ess_bulk(quantity),
        "notes": list(output.notes),
    }


def _redirect_output(log_path):
    """Send this process's stdout and stderr (file descriptors, so that C code and
    child processes follow) to ``log_path``: peers print progress we do not want."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _error_message(exc):
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}".strip()[:500] + "\n" + "".join(lines[-6:])


def _release_free_memory():
    """Collect garbage and hand freed heap pages back to the OS.

    glibc keeps freed memory in its arenas (JAX's worker threads use many), so an
    idle worker could hold gigabytes while another one samples, and the baseline of
    the next run would be inflated. ``malloc_trim`` runs between runs, never in one.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):       # not glibc: nothing to do
        pass


def _handle(command, peer, state, workload, baseline):
    """Answer one command; ``baseline`` is a one-element list the "baseline" command sets."""
    if command[0] == "run":
        gc.collect()
        with MemoryMonitor() as memory:
            output = peer.run(state, command[1])
        stats = summarize(output, workload)
        del output
        _release_free_memory()      # free the draws before the next command
        stats["peak_bytes"] = memory.peak
        stats["baseline_bytes"] = baseline[0]
        stats["memory_polled"] = memory.process is not None
        return stats
    if command[0] == "gradient_ns":
        return peer.gradient_ns(state, command[1])
    if command[0] == "baseline":
        _release_free_memory()
        baseline[0] = MemoryMonitor().current()
        return baseline[0]
    if command[0] == "notes":
        extra_notes = getattr(peer, "extra_notes", None)
        return extra_notes(state, command[1]) if extra_notes else []
    raise ValueError(f"unknown command {command!r}")


def worker_main(conn, sampler, workload, config, log_path, start_method):
    """Entry point of a worker process (multiprocessing, "spawn" context).

    Parameters
    ----------
    conn : multiprocessing.connection.Connection
    sampler : str
    workload : benchmarks.workloads.Workload
    config : benchmarks.peers.RunConfig
    log_path : str
        Where the peer's own output goes.
    start_method : str
        The platform's default multiprocessing start method ("fork" on Linux before
        Python 3.14). A spawned process inherits "spawn" as its default, and PyMC
        starts its chain processes with the default: restore what a user would have.
    """
    import multiprocessing
    multiprocessing.set_start_method(start_method, force=True)
    os.setsid()    # its own process group: a timeout kills it and its children together
    _redirect_output(log_path)
    peer = peers.load(sampler)
    os.environ.update(peer.env(config))   # before the peer imports anything (XLA_FLAGS)
    try:
        start = time.perf_counter()
        state = peer.build(workload, config)
        build_seconds = time.perf_counter() - start
        gc.collect()
        baseline = [MemoryMonitor().current()]   # re-measured by "baseline" after warm-up
    except BaseException as exc:
        conn.send(("error", _error_message(exc)))
        return
    conn.send(("ready", {"build_seconds": build_seconds, "baseline_bytes": baseline[0]}))
    while True:
        try:
            command = conn.recv()
        except EOFError:
            return
        if command[0] == "stop":
            return
        try:
            conn.send(("result", _handle(command, peer, state, workload, baseline)))
        except BaseException as exc:
            conn.send(("error", _error_message(exc)))


def first_call_main(argv):
    """A fresh process: import + build + compile + one sampling run, then report.

    ``argv``: ``sampler workload.pickle config.json seed``. Prints one JSON line
    with ``end`` (``time.time()`` when the first run returned: the orchestrator
    subtracts the moment it started this process), ``build_seconds`` and
    ``sample_seconds``.
    """
    sampler, workload_path, config_json, seed = argv
    peer = peers.load(sampler)
    config = peers.RunConfig(**json.loads(config_json))
    os.environ.update(peer.env(config))
    with open(workload_path, "rb") as f:
        workload = pickle.load(f)
    start = time.perf_counter()
    state = peer.build(workload, config)
    built = time.perf_counter()
    output = peer.run(state, int(seed))
    end = time.time()
    print(json.dumps({"end": end, "build_seconds": built - start,
                      "sample_seconds": time.perf_counter() - built,
                      "timed_seconds": output.seconds}), flush=True)
    # Skip interpreter teardown (JAX and httpstan can take seconds): already measured.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "first-call":
        first_call_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m benchmarks.harness first-call SAMPLER WORKLOAD.pickle "
                 "CONFIG_JSON SEED")
