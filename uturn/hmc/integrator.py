"""Leapfrog integration of Hamiltonian dynamics with a Euclidean metric.

The Hamiltonian is ``H(q, p) = -log pi(q) + K(p)`` with ``K(p) = p' M^{-1} p / 2``.
The inverse metric ``M^{-1}`` is carried as a 2-D array ``inv_metric``:

* shape ``(1, dim)``: diagonal, ``M^{-1} = diag(inv_metric[0])`` (the unit metric is
  all ones);
* shape ``(dim, dim)``: dense.

For ``dim == 1`` both forms are the same number. Momentum draws need a factor ``A``
with ``A A' = M`` (``metric_factor``, same shape convention): for a diagonal metric
``A = diag(1 / sqrt(inv_metric))``; for a dense one ``A = L^{-T}`` where
``M^{-1} = L L'`` (Cholesky), which is upper triangular.

Every function here works in place on preallocated arrays and allocates nothing:
they run at every leapfrog step.

References
----------
Neal, R. M. (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC, ch. 5,
    eq. (5.18)-(5.20) (the leapfrog method).
Betancourt, M. (2017). A Conceptual Introduction to Hamiltonian Monte Carlo.
    arXiv:1701.02434, section 4 and appendix A.
"""
import numba.core.options
import numpy as np
from numba import njit

#: Compiler options for everything in the hot loop. ``reassoc`` lets LLVM vectorise
#: the dot products (summation order is still fixed by the binary, so runs stay
#: reproducible); no ``nnan``/``ninf``: divergence detection relies on inf and NaN.
JIT_OPTIONS = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"})
#: The same, without reference counting, for functions that allocate nothing and keep
#: no array beyond the call (the caller owns every array they touch). numba otherwise
#: increments and decrements an array's reference count, an atomic instruction that
#: waits for every pending store, each time the array is bound to a name: the tree
#: builder's inlined U-turn checks did it 7 times each way per merge: 28% of an
#: eight-schools chain's time in a perf profile; without it one chain of 1,000 + 1,000
#: took 4.2-5.9 ms against 6.4-8.3 ms, side by side.
#: ``_nrt`` is numba's own switch of its runtime (numba >= 0.54); should a release drop
#: it, the kernels compile with reference counting as before.
NO_REFCOUNT = dict(JIT_OPTIONS, _nrt=False) \
    if hasattr(numba.core.options.DefaultOptions, "_nrt") else JIT_OPTIONS

__all__ = ["JIT_OPTIONS", "NO_REFCOUNT", "velocity", "kinetic_energy", "draw_momentum",
           "leapfrog", "leapfrog_from", "metric_factor_from_inv_metric"]


@njit(**NO_REFCOUNT)
def velocity(inv_metric, p, p_sharp):
    """Write ``p_sharp = dK/dp = M^{-1} p`` (Betancourt 2017, "p-sharp")."""
    dim = p.shape[0]
    if inv_metric.shape[0] == 1:
        for i in range(dim):
            p_sharp[i] = inv_metric[0, i] * p[i]
    else:
        for i in range(dim):
            total = 0.0
            for j in range(dim):
                total += inv_metric[i, j] * p[j]
            p_sharp[i] = total


@njit(**NO_REFCOUNT)
def kinetic_energy(p, p_sharp):
    """``K(p) = p' M^{-1} p / 2``, from the momentum and its velocity ``M^{-1} p``."""
    total = 0.0
    for i in range(p.shape[0]):
        total += p[i] * p_sharp[i]
    return 0.5 * total


@njit(**NO_REFCOUNT)
def draw_momentum(rng, metric_factor, p):
    """Draw ``p ~ N(0, M)`` into ``p`` as ``A u`` with ``u ~ N(0, I)`` and ``A A' = M``.

    A dense ``A`` is upper triangular, so ``p_i = sum_{j >= i} A_ij u_j`` can be
    formed in place by visiting ``i`` in increasing order.
    """
    dim = p.shape[0]
    for i in range(dim):
        p[i] = rng.standard_normal()
    if metric_factor.shape[0] == 1:
        for i in range(dim):
            p[i] *= metric_factor[0, i]
    else:
        for i in range(dim):
            total = 0.0
            for j in range(i, dim):
                total += metric_factor[i, j] * p[j]
            p[i] = total


@njit(**NO_REFCOUNT)
def leapfrog(logp_grad, q, p, grad, p_sharp, step_size, inv_metric):
    """One leapfrog step of size ``step_size`` (negative integrates backward in time).

    ``p <- p + (eps/2) grad log pi(q);  q <- q + eps M^{-1} p;
    p <- p + (eps/2) grad log pi(q)``, updating ``q``, ``p``, ``grad`` (the gradient
    of the log density at ``q``) and ``p_sharp = M^{-1} p`` in place.

    Returns
    -------
    (logp, kinetic_energy) : (float, float)
        The log density at the new ``q`` and ``K(p)`` at the new ``p``. A
        non-finite gradient makes ``p`` and so the kinetic energy non-finite, which
        the caller sees as a divergence.
    """
    return leapfrog_from(logp_grad, q, grad, q, p, grad, p_sharp, step_size, inv_metric)


@njit(**NO_REFCOUNT)
def leapfrog_from(logp_grad, q_from, grad_from, q, p, grad, p_sharp, step_size,
                  inv_metric):
    """:func:`leapfrog` from the position ``q_from`` and its gradient ``grad_from``,
    writing the new position and gradient into ``q`` and ``grad`` (which may be
    ``q_from`` and ``grad_from`` themselves: every element is read before it is
    written). ``p`` and ``p_sharp`` are updated in place."""
    half_step = 0.5 * step_size
    dim = q.shape[0]
    if inv_metric.shape[0] == 1:
        # Diagonal metric: each half of the step is one fused pass over the vectors.
        # p_sharp at the half step is not needed: the second pass recomputes it.
        for i in range(dim):
            p[i] += half_step * grad_from[i]
            q[i] = q_from[i] + step_size * (inv_metric[0, i] * p[i])
        logp = logp_grad(q, grad)
        twice_kinetic = 0.0
        for i in range(dim):
            p[i] += half_step * grad[i]
            p_sharp[i] = inv_metric[0, i] * p[i]
            twice_kinetic += p[i] * p_sharp[i]
        return logp, 0.5 * twice_kinetic
    for i in range(dim):
        p[i] += half_step * grad_from[i]
    velocity(inv_metric, p, p_sharp)
    for i in range(dim):
        q[i] = q_from[i] + step_size * p_sharp[i]
    logp = logp_grad(q, grad)
    for i in range(dim):
        p[i] += half_step * grad[i]
    velocity(inv_metric, p, p_sharp)
    return logp, kinetic_energy(p, p_sharp)


@njit(**JIT_OPTIONS)
def metric_factor_from_inv_metric(inv_metric, metric_factor):
    """Fill ``metric_factor`` (``A`` with ``A A' = M``) from ``inv_metric``.

    Returns False if the inverse metric is not positive definite.
    """
    if inv_metric.shape[0] == 1:
        for i in range(inv_metric.shape[1]):
            if not inv_metric[0, i] > 0.0 or not np.isfinite(inv_metric[0, i]):
                return False
            metric_factor[0, i] = 1.0 / np.sqrt(inv_metric[0, i])
        return True
    dim = inv_metric.shape[0]
    if not np.all(np.isfinite(inv_metric)):
        return False
    # Cholesky by hand: numba's np.linalg.cholesky raises on failure, and a
    # raise inside the chain loop would lose the whole run instead of reporting it.
    lower = np.zeros((dim, dim))
    for j in range(dim):
        diagonal = inv_metric[j, j]
        for k in range(j):
            diagonal -= lower[j, k] * lower[j, k]
        if not diagonal > 0.0:
            return False
        lower[j, j] = np.sqrt(diagonal)
        for i in range(j + 1, dim):
            total = inv_metric[i, j]
            for k in range(j):
                total -= lower[i, k] * lower[j, k]
            lower[i, j] = total / lower[j, j]
    # A = L^{-T}: solve L X = I column by column (X = L^{-1} lower triangular), then transpose.
    for column in range(dim):
        for i in range(dim):
            total = 1.0 if i == column else 0.0
            for k in range(column, i):
                total -= lower[i, k] * metric_factor[column, k]
            metric_factor[column, i] = total / lower[i, i] if i >= column else 0.0
    return True
