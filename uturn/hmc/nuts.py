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
``stack`` array holds the left half (``2^k`` states) waiting for its right
half: its last momentum and ``p_sharp`` (stored only for a dense metric; a diagonal
one forms ``inv_metric * p`` where a check needs it), and its momentum sum. Its first state
is the even leaf it began at, kept once in the slot numbered by that leaf's
trailing zero bits (no later leaf of the span has as many), so nothing is copied
from level to level as spans grow. Every merge checks the three no-U-turn
criteria in one pass over the vectors.

Positions and their gradients live in a pool of five ``(q, grad)`` states, named
by index: the two ends of the trajectory, the current sample, the subtree's
proposal and a free one. A leapfrog step writes its new state into the free one
instead of overwriting the end, so choosing a leaf as the proposal, or the proposal
as the sample, renames a state instead of copying two vectors. State 0 starts as
the initial point and is reused once nothing names it. (At 1,000 dimensions one
chain ran 5-12% faster than with the copies, side by side; eight schools did not
change measurably.)

With a diagonal metric consecutive leapfrog steps of a subtree share a pass over the
vectors: the one that ends a step also begins the next (see :func:`_build_subtree`).

References
----------
Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn Sampler. JMLR 15, 1593-1623.
Betancourt, M. (2017). A Conceptual Introduction to Hamiltonian Monte Carlo.
    arXiv:1701.02434, appendix A.
Stan: src/stan/mcmc/hmc/nuts/base_nuts.hpp (transition and build_tree).
"""
import numpy as np
from numba import njit

from .integrator import (JIT_OPTIONS, NO_REFCOUNT, draw_momentum, kinetic_energy,
                         leapfrog_from, velocity)
from .workspace import padded, take

__all__ = ["nuts_workspace", "nuts_workspace_size", "nuts_workspace_in", "nuts_transition",
           "MAX_ENERGY_ERROR",
           "VALID", "TURNING", "DIVERGENT"]

#: A leapfrog step whose energy error exceeds this is a divergence (Stan's max_deltaH).
MAX_ENERGY_ERROR = 1000.0

VALID, TURNING, DIVERGENT = 0, 1, 2

# The tree builder's pieces are inlined into nuts_transition at numba's IR level:
# as separate functions each call passed ~100 scalars (7 per array) and LLVM could
# not keep the arrays' pointers and strides in registers across the leaf loop; a
# leaf cost ~130 ns beyond the gradient instead of ~95 (benchmarks/overhead.py). Like
# every function here that allocates nothing they do no reference counting (see
# integrator.NO_REFCOUNT): inlined, each array argument had cost an atomic increment
# and decrement per merge.
INLINED = dict(NO_REFCOUNT, inline="always")


#: States (q, grad) in the pool: the two ends, the sample, the proposal, and one free
#: for the next leapfrog step to write into.
N_STATES = 5


@njit(**JIT_OPTIONS)
def nuts_workspace(dim, max_treedepth):
    """Arrays one NUTS chain reuses at every transition: O(dim * max_treedepth) memory.

    Returns a tuple ``(ends, states, sums, stack, divergence_point)``:
    ``ends`` (4, dim): p, p_sharp at the forward end then the backward end;
    ``states`` (N_STATES, 2, dim): the pool of positions ``states[k, 0]`` and their
    gradients ``states[k, 1]`` (see the module docstring);
    ``sums`` (5, dim): rho of the trajectory, rho of the subtree being built,
    p and p_sharp at the old trajectory's end next to the new subtree, and the
    momentum half a step ahead of the last leaf (see :func:`_build_subtree`);
    ``stack`` (5, max_treedepth + 1, dim): rows 0-1 hold p and p_sharp of the
    leaves that begin pending spans, in slot :func:`_begin_slot`; rows 2-4 hold the
    last p, last p_sharp and momentum sum of the left half pending at each level
    (with a diagonal metric the p_sharp rows 1 and 3 stay unused: 2 (max_treedepth
    + 1) dim numbers allocated for nothing, 22 draws' worth at the default depth);
    ``divergence_point`` (dim,): where the last divergent trajectory blew up.
    """
    block = np.zeros(nuts_workspace_size(dim, max_treedepth))
    return nuts_workspace_in(block, 0, dim, max_treedepth)[0]


@njit(**JIT_OPTIONS)
def nuts_workspace_size(dim, max_treedepth):
    """Elements of ``block`` that :func:`nuts_workspace_in` takes."""
    levels = max(max_treedepth, 1)
    return (padded(4 * dim) + padded(N_STATES * 2 * dim) + padded(5 * dim)
            + padded(5 * (levels + 1) * dim) + padded(dim))


@njit(**JIT_OPTIONS)
def nuts_workspace_in(block, offset, dim, max_treedepth):
    """:func:`nuts_workspace` cut from a zeroed ``block`` at ``offset``; returns the
    workspace and the offset after it (see :mod:`uturn.hmc.workspace`)."""
    levels = max(max_treedepth, 1)
    ends, offset = take(block, offset, 4 * dim)
    states, offset = take(block, offset, N_STATES * 2 * dim)
    sums, offset = take(block, offset, 5 * dim)
    stack, offset = take(block, offset, 5 * (levels + 1) * dim)
    divergence_point, offset = take(block, offset, dim)
    divergence_point[:] = np.nan
    return (ends.reshape((4, dim)), states.reshape((N_STATES, 2, dim)),
            sums.reshape((5, dim)), stack.reshape((5, levels + 1, dim)),
            divergence_point), offset


@njit(**INLINED)
def _begin_slot(leaf, first_slot):
    """Where leaf ``leaf`` of a subtree keeps its p and p_sharp while a span that it
    begins is pending: its number of trailing zero bits (``first_slot`` for leaf 0).

    A pending left half at level k begins at a leaf with at least k + 1 trailing zeros,
    and every leaf after it, up to the end of its right half, has at most k: so no
    later leaf overwrites the slot before the merge reads it, and no state is copied
    from level to level as the spans grow.
    """
    if leaf == 0:
        return first_slot
    slot = 0
    while not (leaf >> slot) & 1:
        slot += 1
    return slot


@njit(**INLINED)
def _free_state(a, b, c, d):
    """The first state of the pool that none of the four named states is."""
    free = 0
    while free == a or free == b or free == c or free == d:
        free += 1
    return free


@njit(**INLINED)
def _rescaled(sum_weight, weight_scale, new_scale):
    """``sum_weight * exp(weight_scale)`` expressed relative to ``exp(new_scale)``."""
    if weight_scale == new_scale:
        return sum_weight
    return sum_weight * np.exp(weight_scale - new_scale)


@njit(**INLINED)
def _no_u_turn_across(p_sharp_far, p_near, p_sharp_near, rho,
                      p_begin, p_sharp_begin, p_sharp_end, rho_new, inv_metric):
    """The three no-U-turn checks of joining a span (momentum sum ``rho``, far end
    ``p_sharp_far``, near end ``p_near``/``p_sharp_near``) to a new span that starts
    next to its near end (``p_begin``/``p_sharp_begin``) and ends at ``p_sharp_end``
    with momentum sum ``rho_new``, in one pass over the vectors:

    1. the old span extended by the new span's first state,
    2. the new span extended by the old span's near state (Stan 2.21),
    3. the joined span, whose momentum sum ``rho + rho_new`` is written to ``rho``.

    True means "keep going" (every criterion ``p_sharp . rho > 0`` at both ends).
    With a diagonal ``inv_metric`` the ``p_sharp_*`` arguments are the momenta
    themselves and are scaled here (see :func:`_build_subtree`).
    """
    diagonal = inv_metric.shape[0] == 1
    extended_old_far = extended_old_begin = 0.0
    extended_new_near = extended_new_end = 0.0
    joined_far = joined_end = 0.0
    for i in range(rho.shape[0]):
        scale = inv_metric[0, i] if diagonal else 1.0
        sharp_far = scale * p_sharp_far[i]
        sharp_end = scale * p_sharp_end[i]
        span = rho[i] + p_begin[i]
        extended_old_far += sharp_far * span
        extended_old_begin += (scale * p_sharp_begin[i]) * span
        span = rho_new[i] + p_near[i]
        extended_new_near += (scale * p_sharp_near[i]) * span
        extended_new_end += sharp_end * span
        span = rho[i] + rho_new[i]
        rho[i] = span
        joined_far += sharp_far * span
        joined_end += sharp_end * span
    return (extended_old_far > 0.0 and extended_old_begin > 0.0
            and extended_new_near > 0.0 and extended_new_end > 0.0
            and joined_far > 0.0 and joined_end > 0.0)


@njit(**INLINED)
def _no_u_turn_merging(stack, left_begin, left_end, p_begin, p_sharp_begin, p_sharp_end,
                       rho_right, rho_merged, inv_metric):
    """:func:`_no_u_turn_across` for a pending left half and the right half that ends
    at the current state. ``stack[1, left_begin]`` is p_sharp at the left half's first
    state; ``stack[2:5, left_end]`` its last p, last p_sharp and momentum sum (for a
    one-leaf left half pass ``left_end = -1``: all three come from its begin slot);
    the right half's momentum sum ``rho_right`` plus the left's is written to
    ``rho_merged`` (the same array, or the right half's one leaf and the output).
    With a diagonal ``inv_metric`` no p_sharp is stored: the ``p_sharp_*`` arguments
    are momenta and p_sharp is formed here as ``inv_metric * p``, which reads fewer
    vectors than storing it. Indexes the stack directly: building row views here
    cost more than the checks.

    Each of the four cases (diagonal or dense, one-leaf or longer left half) gets a
    copy of the loop in which both are constants. With them as run-time flags inside
    one loop, LLVM chose the stack row of each element inside the loop body and so
    read the stack with gather instructions instead of vector loads (4 gathers in
    the compiled transition, on the hottest loop of a 1,000-d chain's perf profile).
    """
    if inv_metric.shape[0] == 1:
        if left_end < 0:
            return _merging_pass(stack, left_begin, left_end, p_begin, p_sharp_begin,
                                 p_sharp_end, rho_right, rho_merged, inv_metric, True, True)
        return _merging_pass(stack, left_begin, left_end, p_begin, p_sharp_begin,
                             p_sharp_end, rho_right, rho_merged, inv_metric, True, False)
    if left_end < 0:
        return _merging_pass(stack, left_begin, left_end, p_begin, p_sharp_begin,
                             p_sharp_end, rho_right, rho_merged, inv_metric, False, True)
    return _merging_pass(stack, left_begin, left_end, p_begin, p_sharp_begin, p_sharp_end,
                         rho_right, rho_merged, inv_metric, False, False)


@njit(**INLINED)
def _merging_pass(stack, left_begin, left_end, p_begin, p_sharp_begin, p_sharp_end,
                  rho_right, rho_merged, inv_metric, diagonal, one_leaf):
    """The loop of :func:`_no_u_turn_merging`, with ``diagonal`` and ``one_leaf``
    passed as constants by its one caller."""
    sharp_begin_row = 0 if diagonal else 1
    sharp_end_row = 2 if diagonal else 3
    extended_left_begin = extended_left_next = 0.0
    extended_right_prev = extended_right_end = 0.0
    merged_begin = merged_end = 0.0
    for i in range(rho_merged.shape[0]):
        scale = inv_metric[0, i] if diagonal else 1.0
        p_sharp_left_begin = scale * stack[sharp_begin_row, left_begin, i]
        if one_leaf:
            rho_left = stack[0, left_begin, i]
            p_left_end = rho_left
            p_sharp_left_end = p_sharp_left_begin
        else:
            rho_left = stack[4, left_end, i]
            p_left_end = stack[2, left_end, i]
            p_sharp_left_end = scale * stack[sharp_end_row, left_end, i]
        sharp_end = scale * p_sharp_end[i]
        rho_new = rho_right[i]
        span = rho_left + p_begin[i]
        extended_left_begin += p_sharp_left_begin * span
        extended_left_next += (scale * p_sharp_begin[i]) * span
        span = rho_new + p_left_end
        extended_right_prev += p_sharp_left_end * span
        extended_right_end += sharp_end * span
        span = rho_left + rho_new
        rho_merged[i] = span
        merged_begin += p_sharp_left_begin * span
        merged_end += sharp_end * span
    return (extended_left_begin > 0.0 and extended_left_next > 0.0
            and extended_right_prev > 0.0 and extended_right_end > 0.0
            and merged_begin > 0.0 and merged_end > 0.0)


@njit(**INLINED)
def _build_subtree(logp_grad, depth, signed_step, inv_metric, H0, rng,
                   states, first_state, far_end, sample, p, p_sharp, p_half, rho_subtree,
                   stack, divergence_point):
    """Build a subtree of ``2^depth`` leapfrog steps from the end state (position and
    gradient ``states[first_state]``, momentum p and p_sharp, which are advanced in
    place). Each step writes its state into a pool state that neither the current end,
    the proposal, the trajectory's other end ``far_end`` nor the ``sample`` name.
    ``p_half`` is scratch: with a diagonal metric, the momentum half a step ahead.

    On return ``rho_subtree`` holds the subtree's momentum sum; p and p_sharp of the
    subtree's first state are at ``stack[0:2, -1]``.

    Returns
    -------
    (status, sum_weight, weight_scale, proposal_logp, proposal_energy, n_steps,
     sum_metropolis_prob, max_energy_error, end, proposal)
        The subtree's total weight is ``sum_weight * exp(weight_scale)``; ``end``
        and ``proposal`` are the states of its last leaf and of its multinomial
        proposal.
    """
    dim = p.shape[0]
    diagonal = inv_metric.shape[0] == 1
    half_step = 0.5 * signed_step
    first_slot = stack.shape[1] - 1
    # A diagonal metric keeps no p_sharp: it is inv_metric * p wherever it is used.
    sharp = p if diagonal else p_sharp
    sharp_begin_row = 0 if diagonal else 1
    # The weights exp(H0 - H) are summed on a linear scale, relative to
    # exp(weight_scale): one exp per leaf instead of a log-sum-exp (~40 ns). The
    # scale moves only when a weight would overflow, i.e. at a state e^230 times
    # more probable than the start, which happens early in warmup if at all.
    weight_scale = 0.0
    sum_weight = 0.0
    proposal_logp = np.nan
    proposal_energy = np.nan
    proposal = -1
    end = first_state
    sum_metropolis_prob = 0.0
    max_energy_error = 0.0
    n_leaves = 1 << depth
    # With a diagonal metric the leapfrog steps of a subtree run fused: the pass that
    # ends step k (the second half kick and the kinetic energy) also begins step k + 1
    # (its first half kick, kept in p_half, and its drift, written into a free state),
    # the same arithmetic in one pass over the vectors instead of two. Should the
    # subtree stop at step k, the drift was wasted. `drifted` names the state it wrote.
    drifted = -1
    for leaf in range(n_leaves):
        new = drifted if drifted >= 0 else _free_state(end, proposal, far_end, sample)
        q_new = states[new, 0]
        grad_new = states[new, 1]
        if diagonal:
            # integrator.leapfrog_from, written out here because the call cost ~40 ns
            # a step.
            if drifted < 0:
                for i in range(dim):
                    p_half[i] = p[i] + half_step * states[end, 1, i]
                    q_new[i] = states[end, 0, i] + signed_step * (inv_metric[0, i]
                                                                  * p_half[i])
            logp = logp_grad(q_new, grad_new)
            twice_kinetic = 0.0
            if leaf + 1 < n_leaves:
                drifted = _free_state(new, proposal, far_end, sample)
                q_next = states[drifted, 0]
                for i in range(dim):  # p_sharp = inv_metric * p is formed where it is used
                    momentum = p_half[i] + half_step * grad_new[i]
                    p[i] = momentum
                    twice_kinetic += momentum * (inv_metric[0, i] * momentum)
                    ahead = momentum + half_step * grad_new[i]
                    p_half[i] = ahead
                    q_next[i] = q_new[i] + signed_step * (inv_metric[0, i] * ahead)
            else:
                for i in range(dim):
                    momentum = p_half[i] + half_step * grad_new[i]
                    p[i] = momentum
                    twice_kinetic += momentum * (inv_metric[0, i] * momentum)
            kinetic = 0.5 * twice_kinetic
        else:
            logp, kinetic = leapfrog_from(logp_grad, states[end, 0], states[end, 1], q_new,
                                          p, grad_new, p_sharp, signed_step, inv_metric)
        end = new
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
                divergence_point[i] = q_new[i]
            return (DIVERGENT, sum_weight, weight_scale, proposal_logp, proposal_energy,
                    leaf + 1, sum_metropolis_prob, max_energy_error, end, proposal)

        log_weight = -energy_error
        if log_weight - weight_scale > 230.0:
            sum_weight *= np.exp(weight_scale - log_weight)
            weight_scale = log_weight
        weight = np.exp(log_weight - weight_scale)
        sum_weight += weight
        if log_weight >= 0.0:
            sum_metropolis_prob += 1.0
        else:
            sum_metropolis_prob += weight if weight_scale == 0.0 else np.exp(log_weight)
        # Progressive multinomial sampling: the leaf replaces the subtree's proposal
        # with probability weight / sum_weight.
        if leaf == 0 or rng.random() * sum_weight < weight:
            proposal = end
            proposal_logp = logp
            proposal_energy = energy

        if not leaf & 1:  # an even leaf begins spans: keep its state until they merge
            slot = _begin_slot(leaf, first_slot)
            for i in range(dim):
                stack[0, slot, i] = p[i]
            if not diagonal:
                for i in range(dim):
                    stack[1, slot, i] = p_sharp[i]
            if n_leaves == 1:
                for i in range(dim):
                    rho_subtree[i] = p[i]
            continue

        # Merge every pending left half that this odd leaf completes (one per trailing
        # one bit of `leaf`); `rho_subtree` becomes the merged span's momentum sum.
        level = 0
        while (leaf >> level) & 1:
            left_begin = _begin_slot(leaf + 1 - (2 << level), first_slot)
            if level == 0:  # both halves are single leaves; the right one is this leaf
                persist = _no_u_turn_merging(stack, left_begin, -1, p, sharp, sharp, p,
                                             rho_subtree, inv_metric)
            else:
                right_begin = _begin_slot(leaf + 1 - (1 << level), first_slot)
                persist = _no_u_turn_merging(
                    stack, left_begin, level, stack[0, right_begin],
                    stack[sharp_begin_row, right_begin], sharp, rho_subtree, rho_subtree,
                    inv_metric)
            if not persist:
                return (TURNING, sum_weight, weight_scale, proposal_logp, proposal_energy,
                        leaf + 1, sum_metropolis_prob, max_energy_error, end, proposal)
            level += 1
        if level < depth:  # the merged span is now a left half waiting at `level`
            for i in range(dim):
                stack[2, level, i] = p[i]
                stack[4, level, i] = rho_subtree[i]
            if not diagonal:
                for i in range(dim):
                    stack[3, level, i] = p_sharp[i]
    return (VALID, sum_weight, weight_scale, proposal_logp, proposal_energy, n_leaves,
            sum_metropolis_prob, max_energy_error, end, proposal)


@njit(**NO_REFCOUNT)
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
    ends, states, sums, stack, divergence_point = workspace
    p_fwd, p_sharp_fwd, p_bck, p_sharp_bck = ends[0], ends[1], ends[2], ends[3]
    rho, rho_subtree, p_near, p_sharp_near, p_half = (sums[0], sums[1], sums[2], sums[3],
                                                      sums[4])
    stack_begin_p, stack_begin_p_sharp = stack[0], stack[1]
    dim = q.shape[0]
    diagonal = inv_metric.shape[0] == 1

    draw_momentum(rng, metric_factor, p_fwd)
    velocity(inv_metric, p_fwd, p_sharp_fwd)
    H0 = -logp + kinetic_energy(p_fwd, p_sharp_fwd)
    # Both ends and the sample start as the initial state, pool state 0: steps never
    # write into a state that is named, so they can share it.
    for i in range(dim):
        states[0, 0, i] = q[i]
        states[0, 1, i] = grad[i]
        p_bck[i] = p_fwd[i]
        p_sharp_bck[i] = p_sharp_fwd[i]
        rho[i] = p_fwd[i]
    state_fwd = state_bck = sample = 0
    moved = False  # whether the sample left the initial state (q, grad hold that)

    sample_logp = logp
    sample_energy = H0
    # The trajectory's total weight, sum_weight * exp(weight_scale), on the linear
    # scale as in _build_subtree; the initial state has weight exp(H0 - H0) = 1.
    sum_weight = 1.0
    weight_scale = 0.0
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
            end, far = state_fwd, state_bck
            p_end, p_sharp_end = p_fwd, p_sharp_fwd
            p_far, p_sharp_far = p_bck, p_sharp_bck
            signed_step = step_size
        else:
            end, far = state_bck, state_fwd
            p_end, p_sharp_end = p_bck, p_sharp_bck
            p_far, p_sharp_far = p_fwd, p_sharp_fwd
            signed_step = -step_size
        for i in range(dim):
            p_near[i] = p_end[i]
        if not diagonal:
            for i in range(dim):
                p_sharp_near[i] = p_sharp_end[i]

        (status, sum_weight_subtree, weight_scale_subtree, proposal_logp, proposal_energy,
         steps, metropolis_prob, subtree_max_error, end, proposal) = _build_subtree(
            logp_grad, depth, signed_step, inv_metric, H0, rng,
            states, end, far, sample, p_end, p_sharp_end, p_half, rho_subtree, stack,
            divergence_point)
        if forward:
            state_fwd = end
        else:
            state_bck = end
        n_steps += steps
        sum_metropolis_prob += metropolis_prob
        if not abs(subtree_max_error) <= abs(max_energy_error):
            max_energy_error = subtree_max_error
        if status != VALID:
            diverging = status == DIVERGENT
            break
        depth += 1

        # Biased progressive sampling between the old trajectory and the subtree.
        # Both weights relative to the larger scale (almost always both are 0).
        scale = max(weight_scale, weight_scale_subtree)
        old_weight = _rescaled(sum_weight, weight_scale, scale)
        new_weight = _rescaled(sum_weight_subtree, weight_scale_subtree, scale)
        if new_weight > old_weight or rng.random() * old_weight < new_weight:
            sample = proposal
            moved = True
            sample_logp = proposal_logp
            sample_energy = proposal_energy
        sum_weight = old_weight + new_weight
        weight_scale = scale

        # No-U-turn checks across the merge of the old trajectory and the subtree.
        subtree_begin_p, subtree_begin_p_sharp = stack_begin_p[-1], stack_begin_p_sharp[-1]
        if diagonal:  # no p_sharp is kept (see _build_subtree): pass the momenta
            persist = _no_u_turn_across(p_far, p_near, p_near, rho, subtree_begin_p,
                                        subtree_begin_p, p_end, rho_subtree, inv_metric)
        else:
            persist = _no_u_turn_across(p_sharp_far, p_near, p_sharp_near, rho,
                                        subtree_begin_p, subtree_begin_p_sharp, p_sharp_end,
                                        rho_subtree, inv_metric)
        if not persist:
            break

    if moved:  # state 0 may have been reused: `sample` names the state either way
        for i in range(dim):
            q[i] = states[sample, 0, i]
            grad[i] = states[sample, 1, i]
    acceptance_rate = sum_metropolis_prob / n_steps if n_steps > 0 else 0.0
    return (sample_logp, sample_energy, sample_energy - H0, max_energy_error, depth,
            n_steps, acceptance_rate, diverging, reached_max_treedepth)
