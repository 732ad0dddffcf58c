"""One transition of the multinomial No-U-Turn Sampler, as Stan does it.

The trajectory grows by doubling. At each doubling a new subtree of ``2^depth``
leapfrog steps is built from one end of the current trajectory, in a direction
drawn uniformly. The next state is drawn from all states of the trajectory with
weights ``exp(H0 - H)`` (multinomial sampling):

* inside a subtree by *progressive* sampling: leaf ``k`` replaces the subtree's
  proposal with probability ``w_k / sum_{j<=k} w_j``, which leaves the proposal
  distributed proportionally to the weights (Betancourt 2017, A.3.1);
* at the top level by *biased progressive* sampling: the new subtree's proposal
  replaces the current sample with probability ``min(1, W_new / W_old)``, which
  favours moving away from the starting point (Betancourt 2017, A.3.2).

The trajectory stops when

* a subtree or the merged trajectory turns back on itself: the generalized
  no-U-turn criterion ``p_sharp(-) . rho > 0 and p_sharp(+) . rho > 0`` fails,
  where ``rho`` is the sum of the momenta over the span and ``p_sharp = M^{-1} p``
  at its two ends (Betancourt 2017, A.4.2); every merge of two halves also checks
  each half extended by the neighbouring state of the other half (Stan 2.21,
  stan-dev/stan#2800), which catches U-turns the plain check misses;
* a leapfrog step diverges: its energy error ``H - H0`` exceeds 1000, or the log
  density or gradient is not finite. The subtree is discarded and the draw is
  taken from the trajectory built so far;
* the tree reaches ``max_treedepth`` doublings.

The binary tree is built iteratively, leaf by leaf, so that numba needs no
recursion: after leaf ``n`` (0-based within the subtree) the subtrees that end at
``n`` are merged, one per trailing one bit of ``n``. Level ``k`` of the
``stack_*`` arrays holds the left half (``2^k`` states) waiting for its right
half: its first and last momentum and ``p_sharp``, and its momentum sum.

References
----------
Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn Sampler. JMLR 15, 1593-1623.
Betancourt, M. (2017). A Conceptual Introduction to Hamiltonian Monte Carlo.
    arXiv:1701.02434, appendix A.
Stan: src/stan/mcmc/hmc/nuts/base_nuts.hpp (transition and build_tree).
"""
import numpy as np
from numba import njit

from .integrator import JIT_OPTIONS, draw_momentum, kinetic_energy, leapfrog, velocity

__all__ = ["nuts_workspace", "nuts_transition", "MAX_ENERGY_ERROR",
           "VALID", "TURNING", "DIVERGENT"]

#: A leapfrog step whose energy error exceeds this is a divergence (Stan's max_deltaH).
MAX_ENERGY_ERROR = 1000.0

VALID, TURNING, DIVERGENT = 0, 1, 2


@njit(**JIT_OPTIONS)
def nuts_workspace(dim, max_treedepth):
    """Arrays one NUTS chain reuses at every transition: O(dim * max_treedepth) memory.

    Returns a tuple ``(ends, proposal, sums, stack, divergence_point)``:
    ``ends`` (8, dim): q, p, grad, p_sharp at the forward end then the backward end;
    ``proposal`` (2, dim): q and grad of the current subtree's proposal;
    ``sums`` (4, dim): rho of the trajectory, rho of the subtree being built,
    p and p_sharp at the old trajectory's end next to the new subtree;
    ``stack`` (5, max_treedepth, dim): the pending left halves' first p, first
    p_sharp, last p, last p_sharp and momentum sum;
    ``divergence_point`` (dim,): where the last divergent trajectory blew up.
    """
    levels = max(max_treedepth, 1)
    return (np.zeros((8, dim)), np.zeros((2, dim)), np.zeros((4, dim)),
            np.zeros((5, levels, dim)), np.full(dim, np.nan))


@njit(**JIT_OPTIONS)
def _logaddexp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@njit(**JIT_OPTIONS)
def _no_u_turn(p_sharp_minus, p_sharp_plus, rho, rho_extra):
    """Generalized no-U-turn criterion over a span whose momentum sum is
    ``rho + rho_extra`` (pass ``rho_extra = None`` for just ``rho``), with
    ``p_sharp`` at its two ends. True means "keep going"."""
    dot_minus = 0.0
    dot_plus = 0.0
    if rho_extra is None:
        for i in range(rho.shape[0]):
            dot_minus += p_sharp_minus[i] * rho[i]
            dot_plus += p_sharp_plus[i] * rho[i]
    else:
        for i in range(rho.shape[0]):
            span = rho[i] + rho_extra[i]
            dot_minus += p_sharp_minus[i] * span
            dot_plus += p_sharp_plus[i] * span
    return dot_minus > 0.0 and dot_plus > 0.0


@njit(**JIT_OPTIONS)
def _build_subtree(logp_grad, depth, signed_step, inv_metric, H0, rng,
                   q, p, grad, p_sharp, proposal, rho_subtree, stack,
                   divergence_point):
    """Build a subtree of ``2^depth`` leapfrog steps from the end state (q, p, grad,
    p_sharp), which is advanced in place and ends at the subtree's last state.

    On return ``proposal`` holds the subtree's multinomial proposal (q, grad) and
    ``rho_subtree`` its momentum sum; the subtree's first state is at
    ``stack[0:2, depth - 1]`` (or the end state itself when ``depth == 0``).

    Returns
    -------
    (status, log_sum_weight, proposal_logp, proposal_energy, n_steps,
     sum_metropolis_prob, max_energy_error)
    """
    stack_begin_p, stack_begin_p_sharp = stack[0], stack[1]
    stack_end_p, stack_end_p_sharp, stack_rho = stack[2], stack[3], stack[4]
    proposal_q, proposal_grad = proposal[0], proposal[1]
    dim = q.shape[0]

    log_sum_weight = -np.inf
    proposal_logp = np.nan
    proposal_energy = np.nan
    sum_metropolis_prob = 0.0
    max_energy_error = 0.0
    n_leaves = 1 << depth
    for leaf in range(n_leaves):
        logp, kinetic = leapfrog(logp_grad, q, p, grad, p_sharp, signed_step, inv_metric)
        energy = kinetic - logp
        energy_error = energy - H0
        if np.isnan(energy_error):
            energy_error = np.inf
        if not abs(energy_error) <= abs(max_energy_error):
            max_energy_error = energy_error
        if not np.isfinite(energy_error) or energy_error > MAX_ENERGY_ERROR:
            # Stan counts the divergent leaf in the acceptance statistic too.
            if energy_error < 0.0:
                sum_metropolis_prob += 1.0
            elif energy_error < np.inf:
                sum_metropolis_prob += np.exp(-energy_error)
            for i in range(dim):
                divergence_point[i] = q[i]
            return (DIVERGENT, log_sum_weight, proposal_logp, proposal_energy,
                    leaf + 1, sum_metropolis_prob, max_energy_error)

        log_weight = -energy_error
        log_sum_weight = _logaddexp(log_sum_weight, log_weight)
        sum_metropolis_prob += 1.0 if log_weight > 0.0 else np.exp(log_weight)
        # Progressive multinomial sampling within the subtree.
        if leaf == 0 or rng.random() < np.exp(log_weight - log_sum_weight):
            for i in range(dim):
                proposal_q[i] = q[i]
                proposal_grad[i] = grad[i]
            proposal_logp = logp
            proposal_energy = energy

        # Merge every pending left half that this leaf completes (one per trailing
        # one bit of `leaf`); `rho_subtree` is the momentum sum of the right half.
        for i in range(dim):
            rho_subtree[i] = p[i]
        level = 0
        while (leaf >> level) & 1:
            if level == 0:
                right_begin_p, right_begin_p_sharp = p, p_sharp
            else:
                right_begin_p = stack_begin_p[level - 1]
                right_begin_p_sharp = stack_begin_p_sharp[level - 1]
            # The left half extended by the right half's first state ...
            persist = _no_u_turn(stack_begin_p_sharp[level], right_begin_p_sharp,
                                 stack_rho[level], right_begin_p)
            # ... the right half extended by the left half's last state ...
            persist = persist and _no_u_turn(stack_end_p_sharp[level], p_sharp,
                                             rho_subtree, stack_end_p[level])
            for i in range(dim):
                rho_subtree[i] += stack_rho[level, i]
            # ... and the merged span.
            persist = persist and _no_u_turn(stack_begin_p_sharp[level], p_sharp,
                                             rho_subtree, None)
            if not persist:
                return (TURNING, log_sum_weight, proposal_logp, proposal_energy,
                        leaf + 1, sum_metropolis_prob, max_energy_error)
            level += 1
        if level < depth:  # the merged span is now a left half waiting at `level`
            if level == 0:
                stack_begin_p[0, :] = p
                stack_begin_p_sharp[0, :] = p_sharp
            else:
                stack_begin_p[level, :] = stack_begin_p[level - 1, :]
                stack_begin_p_sharp[level, :] = stack_begin_p_sharp[level - 1, :]
            stack_end_p[level, :] = p
            stack_end_p_sharp[level, :] = p_sharp
            stack_rho[level, :] = rho_subtree
    return (VALID, log_sum_weight, proposal_logp, proposal_energy, n_leaves,
            sum_metropolis_prob, max_energy_error)


@njit(**JIT_OPTIONS)
def nuts_transition(logp_grad, q, grad, logp, step_size, inv_metric, metric_factor,
                    max_treedepth, rng, workspace):
    """One multinomial NUTS transition from ``q`` (Stan's ``base_nuts::transition``).

    Parameters
    ----------
    logp_grad : compiled ``(x, grad) -> float``
    q, grad : ndarray (dim,)
        Current position and the gradient of the log density there; overwritten
        with the new draw and its gradient.
    logp : float
        Log density at ``q``.
    step_size : float
    inv_metric, metric_factor : ndarray
        ``M^{-1}`` and ``A`` with ``A A' = M`` (see ``integrator``).
    max_treedepth : int
    rng : numpy.random.Generator
    workspace : tuple
        From :func:`nuts_workspace`.

    Returns
    -------
    (logp, energy, energy_error, max_energy_error, tree_depth, n_steps,
     acceptance_rate, diverging, reached_max_treedepth)
        ``energy`` is H at the new draw and ``energy_error`` its difference from
        the initial H; ``acceptance_rate`` is the mean of ``min(1, exp(H0 - H))``
        over every leapfrog state built, the statistic dual averaging adapts.
    """
    ends, proposal, sums, stack, divergence_point = workspace
    q_fwd, p_fwd, grad_fwd, p_sharp_fwd = ends[0], ends[1], ends[2], ends[3]
    q_bck, p_bck, grad_bck, p_sharp_bck = ends[4], ends[5], ends[6], ends[7]
    rho, rho_subtree, p_near, p_sharp_near = sums[0], sums[1], sums[2], sums[3]
    stack_begin_p, stack_begin_p_sharp = stack[0], stack[1]
    dim = q.shape[0]

    draw_momentum(rng, metric_factor, p_fwd)
    velocity(inv_metric, p_fwd, p_sharp_fwd)
    H0 = -logp + kinetic_energy(p_fwd, p_sharp_fwd)
    for i in range(dim):
        q_fwd[i] = q[i]
        q_bck[i] = q[i]
        grad_fwd[i] = grad[i]
        grad_bck[i] = grad[i]
        p_bck[i] = p_fwd[i]
        p_sharp_bck[i] = p_sharp_fwd[i]
        rho[i] = p_fwd[i]

    sample_logp = logp
    sample_energy = H0
    log_sum_weight = 0.0  # the initial state has weight exp(H0 - H0) = 1
    depth = 0
    n_steps = 0
    sum_metropolis_prob = 0.0
    max_energy_error = 0.0
    diverging = False
    reached_max_treedepth = False
    while True:
        if depth >= max_treedepth:
            reached_max_treedepth = True
            break
        forward = rng.random() > 0.5
        if forward:
            q_end, p_end, grad_end, p_sharp_end = q_fwd, p_fwd, grad_fwd, p_sharp_fwd
            p_sharp_far = p_sharp_bck
            signed_step = step_size
        else:
            q_end, p_end, grad_end, p_sharp_end = q_bck, p_bck, grad_bck, p_sharp_bck
            p_sharp_far = p_sharp_fwd
            signed_step = -step_size
        for i in range(dim):
            p_near[i] = p_end[i]
            p_sharp_near[i] = p_sharp_end[i]

        (status, log_sum_weight_subtree, proposal_logp, proposal_energy, steps,
         metropolis_prob, subtree_max_error) = _build_subtree(
            logp_grad, depth, signed_step, inv_metric, H0, rng,
            q_end, p_end, grad_end, p_sharp_end, proposal, rho_subtree, stack,
            divergence_point)
        n_steps += steps
        sum_metropolis_prob += metropolis_prob
        if not abs(subtree_max_error) <= abs(max_energy_error):
            max_energy_error = subtree_max_error
        if status != VALID:
            diverging = status == DIVERGENT
            break
        depth += 1

        # Biased progressive sampling between the old trajectory and the subtree.
        if log_sum_weight_subtree > log_sum_weight or \
                rng.random() < np.exp(log_sum_weight_subtree - log_sum_weight):
            for i in range(dim):
                q[i] = proposal[0, i]
                grad[i] = proposal[1, i]
            sample_logp = proposal_logp
            sample_energy = proposal_energy
        log_sum_weight = _logaddexp(log_sum_weight, log_sum_weight_subtree)

        # No-U-turn checks across the merge of the old trajectory and the subtree.
        if depth == 1:
            subtree_begin_p, subtree_begin_p_sharp = p_end, p_sharp_end
        else:
            subtree_begin_p = stack_begin_p[depth - 2]
            subtree_begin_p_sharp = stack_begin_p_sharp[depth - 2]
        persist = _no_u_turn(p_sharp_far, subtree_begin_p_sharp, rho, subtree_begin_p)
        persist = persist and _no_u_turn(p_sharp_near, p_sharp_end, rho_subtree, p_near)
        for i in range(dim):
            rho[i] += rho_subtree[i]
        persist = persist and _no_u_turn(p_sharp_far, p_sharp_end, rho, None)
        if not persist:
            break

    acceptance_rate = sum_metropolis_prob / n_steps if n_steps > 0 else 0.0
    return (sample_logp, sample_energy, sample_energy - H0, max_energy_error, depth,
            n_steps, acceptance_rate, diverging, reached_max_treedepth)
