r"""The exact posterior of the normal-normal hierarchical model, by quadrature.

For :math:`\mu \sim \mathcal N(0, s_\mu^2)`, :math:`\tau \sim \text{Half-Cauchy}(0, s_\tau)`,
:math:`\theta_j \sim \mathcal N(\mu, \tau^2)`, :math:`y_j \sim \mathcal N(\theta_j, \sigma_j^2)`
everything but :math:`\tau` integrates out in closed form:

1. :math:`\theta` integrates out: :math:`y_j \mid \mu, \tau \sim \mathcal N(\mu, v_j)` with
   :math:`v_j = \sigma_j^2 + \tau^2`.
2. :math:`\mu` integrates out: with :math:`w_j = 1/v_j`, :math:`P = 1/s_\mu^2 + \sum_j w_j`
   and :math:`m = \sum_j w_j y_j / P`,

   .. math::

       \mu \mid \tau, y \sim \mathcal N(m, 1/P), \qquad
       \log p(y \mid \tau) = -\tfrac J2 \log 2\pi - \tfrac12 \sum_j \log v_j - \log s_\mu
       - \tfrac12 \log P - \tfrac12 \Big[\sum_j w_j (y_j - m)^2 + m^2/s_\mu^2\Big].

3. Given :math:`\tau` and :math:`y`, :math:`(\mu, \theta)` are jointly normal:

   .. math::

       \theta_j \mid \tau, y &\sim \mathcal N\Big(\frac{\tau^2 y_j + \sigma_j^2 m}{v_j},\;
           \frac{\sigma_j^2\tau^2}{v_j} + \frac{\sigma_j^4}{v_j^2 P}\Big), \\
       \nu_j = \frac{\theta_j - \mu}{\tau} \;\Big|\; \tau, y &\sim
           \mathcal N\Big(\frac{\tau (y_j - m)}{v_j},\;
           \frac{\sigma_j^2}{v_j} + \frac{\tau^2}{v_j^2 P}\Big).

What is left is one integral over :math:`s = \log\tau` of the density
:math:`p(s \mid y) \propto p(y \mid e^s)\, p_\tau(e^s)\, e^s`. It is smooth
(analytic in a strip of half-width :math:`\pi/2` around the real line), so
composite Gauss-Legendre quadrature on cells refined until halving a cell
changes nothing at the 1e-14 level gives the posterior moments to about 1e-12.
Posterior means and variances of :math:`\mu, \theta_j, \nu_j` are mixtures over
the nodes of the normal conditionals above; their quantiles solve
:math:`\sum_i W_i\,\Phi((q - m_i)/s_i) = p` by safeguarded Newton iteration.
Quantiles of :math:`\log\tau` invert the integrated CDF; those of
:math:`\tau` are their exponentials.

Moments of :math:`\tau` need care in the right tail: :math:`p(\tau \mid y)` decays
like :math:`\tau^{-(J+2)}` (the likelihood like :math:`\tau^{-J}`, the
half-Cauchy prior like :math:`\tau^{-2}`), so :math:`E[\tau^2]` is infinite for
J = 1, and the sd of :math:`\tau` is reported as ``inf`` there.
"""
import math

import numpy as np

from .hierarchical import _check_data

__all__ = ["exact_posterior"]

_LOG_2PI = math.log(2.0 * math.pi)
# Gauss-Legendre rule on [-1, 1] used in every cell: 10 nodes integrate
# polynomials of degree 19 exactly; cells are refined until this is enough.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(10)
_QUANTILES = {"q05": 0.05, "q50": 0.5, "q95": 0.95}
_REFINE_TOL = 1e-14     # relative change of any monitored integral when a cell is halved
_TAIL_DROP = 60.0       # integrands below exp(-60) of their peak are left out of the range


def _log_joint_over_log_tau(log_tau, y, sigma2, mu_scale, tau_scale):
    r"""``log p(y, s)`` at ``s = log tau`` (array ``(n,)``), and the conditional pieces.

    Returns ``(log_joint, tau2, v, m, P)`` with ``log_joint`` of shape ``(n,)``:
    :math:`\log p(y \mid \tau) + \log p_\tau(\tau) + \log\tau`, fully normalised,
    so that its integral over s is the evidence p(y). ``v`` is ``(n, J)``.
    """
    n_groups = y.shape[0]
    tau2 = np.exp(2.0 * log_tau)
    v = sigma2[None, :] + tau2[:, None]
    w = 1.0 / v
    precision = 1.0 / mu_scale**2 + w.sum(axis=1)
    m = (w * y[None, :]).sum(axis=1) / precision
    # sum_j w_j (y_j - m)^2 + m^2 / s_mu^2: the same quadratic form as
    # sum_j w_j y_j^2 - (sum_j w_j y_j)^2 / P, but without cancellation.
    quadratic = (w * (y[None, :] - m[:, None]) ** 2).sum(axis=1) + m**2 / mu_scale**2
    log_lik = (-0.5 * n_groups * _LOG_2PI - 0.5 * np.log(v).sum(axis=1)
               - math.log(mu_scale) - 0.5 * np.log(precision) - 0.5 * quadratic)
    # Half-Cauchy on tau, plus the Jacobian log tau: log(1 + tau^2/s^2) written as
    # logaddexp(0, 2 (s - log s_tau)) so it cannot overflow.
    log_prior = (math.log(2.0 / (math.pi * tau_scale))
                 - np.logaddexp(0.0, 2.0 * (log_tau - math.log(tau_scale))) + log_tau)
    return log_lik + log_prior, tau2, v, m, precision


def _gauss_legendre(edges):
    """Nodes and weights of the 10-point rule on every cell between consecutive ``edges``."""
    lower = edges[:-1, None]
    half_width = 0.5 * np.diff(edges)[:, None]
    nodes = lower + half_width * (_GL_NODES[None, :] + 1.0)
    weights = half_width * _GL_WEIGHTS[None, :]
    return nodes, weights          # both (n_cells, 10)


def _monitored_integrands(log_joint, log_tau, reference, finite_tau_variance):
    """Integrands whose integrals must all be accurate: 1, s, s^2, tau and tau^2 times p."""
    density = np.exp(log_joint - reference)
    columns = [density, density * log_tau, density * log_tau**2, density * np.exp(log_tau)]
    if finite_tau_variance:
        columns.append(density * np.exp(2.0 * log_tau))
    return np.stack(columns, axis=-1)


def _integration_cells(log_density, finite_tau_variance, data_scales):
    """Cell edges on which 10-point Gauss-Legendre integrates p(s | y) (and s, tau, tau^2
    times it) to a relative accuracy of about ``_REFINE_TOL``.

    First a coarse scan over a wide range of s finds where any monitored
    integrand is within ``exp(-_TAIL_DROP)`` of its peak; then cells are halved
    until halving changes no cell's contribution by more than ``_REFINE_TOL``
    of the total.
    """
    low_scale, high_scale = data_scales
    coarse = np.arange(math.log(low_scale) - 80.0, math.log(high_scale) + 80.0, 0.125)
    log_joint = log_density(coarse)
    curves = [log_joint, log_joint + coarse]
    if finite_tau_variance:
        curves.append(log_joint + 2.0 * coarse)
    keep = np.zeros(coarse.shape, dtype=bool)
    for curve in curves:
        keep |= curve > curve.max() - _TAIL_DROP
    inside = np.flatnonzero(keep)
    lower = coarse[max(inside[0] - 1, 0)]
    upper = coarse[min(inside[-1] + 1, coarse.size - 1)]
    reference = log_joint.max()

    edges = np.linspace(lower, upper, int(math.ceil((upper - lower) / 0.5)) + 1)
    for _ in range(40):
        nodes, weights = _gauss_legendre(edges)
        whole = np.einsum("cn,cnk->ck", weights, _monitored_integrands(
            log_density(nodes.ravel()).reshape(nodes.shape), nodes, reference,
            finite_tau_variance))
        midpoints = 0.5 * (edges[:-1] + edges[1:])
        halves_edges = np.sort(np.concatenate([edges, midpoints]))
        half_nodes, half_weights = _gauss_legendre(halves_edges)
        halves = np.einsum("cn,cnk->ck", half_weights, _monitored_integrands(
            log_density(half_nodes.ravel()).reshape(half_nodes.shape), half_nodes,
            reference, finite_tau_variance))
        halves = halves[0::2] + halves[1::2]
        totals = np.abs(halves.sum(axis=0))
        needs_split = np.any(np.abs(whole - halves) > _REFINE_TOL * totals, axis=1)
        if not needs_split.any():
            return edges
        edges = np.sort(np.concatenate([edges, midpoints[needs_split]]))
    raise RuntimeError("exact_posterior: quadrature over log tau did not converge; "
                       "the data may be extreme (please report this)")


def _mixture_quantiles(weights, means, sds, probabilities):
    r"""Quantiles of normal mixtures :math:`F(q) = \sum_i W_i \Phi((q - m_{ki}) / s_{ki})`.

    ``weights`` (n,) sum to 1; ``means`` and ``sds`` are (K, n): K mixtures at once.
    Returns (K, len(probabilities)). Newton steps, kept inside a bracket that
    bisection shrinks whenever a step would leave it.
    """
    from scipy import special  # imported here: scipy.special costs 0.2 s at import
    n_mixtures = means.shape[0]
    inv_sds = 1.0 / sds
    # Bracket: every component puts less than Phi(-12) ~ 2e-33 below / above it.
    bracket_low = (means - 12.0 * sds).min(axis=1)
    bracket_high = (means + 12.0 * sds).max(axis=1)
    # Start from the normal with the mixture's mean and variance.
    mixture_mean = means @ weights
    mixture_sd = np.sqrt((sds**2 + (means - mixture_mean[:, None]) ** 2) @ weights)
    result = np.empty((n_mixtures, len(probabilities)))
    for column, probability in enumerate(probabilities):
        lower, upper = bracket_low.copy(), bracket_high.copy()
        q = np.clip(mixture_mean + mixture_sd * special.ndtri(probability), lower, upper)
        active = np.arange(n_mixtures)
        for _ in range(200):
            if active.size == 0:
                break
            z = (q[active, None] - means[active]) * inv_sds[active]
            cdf = special.ndtr(z) @ weights
            pdf = (np.exp(-0.5 * z * z) * inv_sds[active]) @ weights / math.sqrt(2.0 * math.pi)
            below = cdf < probability
            lower[active[below]] = q[active[below]]
            upper[active[~below]] = q[active[~below]]
            with np.errstate(divide="ignore", invalid="ignore"):
                new_q = q[active] - (cdf - probability) / pdf
            lo, hi = lower[active], upper[active]
            # A step may land on the bracket's end (q itself is one when F(q) = p exactly).
            outside = ~((new_q >= lo) & (new_q <= hi))   # NaN steps count as outside
            new_q[outside] = 0.5 * (lo[outside] + hi[outside])
            scale = 1e-13 * (1.0 + np.abs(new_q))
            converged = (np.abs(new_q - q[active]) <= scale) | (hi - lo <= scale)
            q[active] = new_q
            active = active[~converged]
        result[:, column] = q
    return result


def _summary(mean, sd, q05, q50, q95):
    return {"mean": float(mean), "sd": float(sd), "q05": float(q05),
            "q50": float(q50), "q95": float(q95)}


def exact_posterior(y, sigma, mu_scale=5.0, tau_scale=5.0):
    r"""Exact posterior summaries of the normal-normal hierarchical model.

    The model is the one of :func:`uturn.models.hierarchical_normal`:

    .. math::

        \mu \sim \mathcal N(0, s_\mu^2), \quad
        \tau \sim \text{Half-Cauchy}(0, s_\tau), \quad
        \theta_j \sim \mathcal N(\mu, \tau^2), \quad
        y_j \sim \mathcal N(\theta_j, \sigma_j^2).

    :math:`\theta` and :math:`\mu` are integrated out analytically
    (:math:`y_j \mid \mu, \tau \sim \mathcal N(\mu, \sigma_j^2 + \tau^2)`, and
    :math:`\mu \mid \tau, y` is normal), leaving a one-dimensional integral over
    :math:`\log\tau`, done by adaptive composite Gauss-Legendre quadrature.
    Means, standard deviations and the 5 %, 50 % and 95 % quantiles are exact
    to about 1e-10 relative (quantiles by root finding on the exact CDF).

    Parameters
    ----------
    y : array_like, shape (J,)
        Observed group estimates, finite.
    sigma : array_like, shape (J,)
        Their known standard errors, finite and positive.
    mu_scale : float, default 5.0
        Prior standard deviation of :math:`\mu`.
    tau_scale : float, default 5.0
        Scale of the half-Cauchy prior on :math:`\tau`.

    Returns
    -------
    dict
        ``{"posterior": {name: {"mean", "sd", "q05", "q50", "q95"}},
        "log_evidence": float}``, the layout of
        ``shared/reference/eight_schools.json``. Names, in order: ``mu``,
        ``tau``, ``log_tau``, ``theta[0]`` ... ``theta[J-1]``, ``nu[0]`` ...
        ``nu[J-1]`` (``nu_j = (theta_j - mu) / tau``, the non-centered
        coordinates), all 0-based. ``log_evidence`` is
        :math:`\log p(y) = \log \int p(y \mid \mu, \tau, \theta)\,
        p(\theta \mid \mu, \tau)\, p(\mu)\, p(\tau)`, with every normalising
        constant. For J = 1 the sd of ``tau`` is ``inf`` (the posterior of
        :math:`\tau` decays like :math:`\tau^{-3}`).

    Raises
    ------
    TypeError, ValueError
        On bad inputs, as :func:`uturn.models.hierarchical_normal`.

    References
    ----------
    Gelman, A. et al. (2013). *Bayesian Data Analysis*, 3rd ed., section 5.4
    (the marginal posterior :math:`p(\tau \mid y)` and the conditionals used here).

    Examples
    --------
    >>> from uturn.models import exact_posterior
    >>> from uturn.models.eight_schools import Y, SIGMA
    >>> exact = exact_posterior(Y, SIGMA)
    >>> round(exact["posterior"]["log_tau"]["mean"], 7)
    0.8021392
    """
    y, sigma, mu_scale, tau_scale = _check_data(y, sigma, mu_scale, tau_scale)
    n_groups = y.shape[0]
    sigma2 = sigma**2
    finite_tau_variance = n_groups >= 2

    def log_density(log_tau):
        return _log_joint_over_log_tau(log_tau, y, sigma2, mu_scale, tau_scale)[0]

    # The coarse scan must cover every scale the posterior of tau could sit at.
    low_scale = min(sigma.min(), tau_scale)
    high_scale = max(sigma.max(), tau_scale, np.ptp(y), np.abs(y).max(), mu_scale)
    edges = _integration_cells(log_density, finite_tau_variance, (low_scale, high_scale))

    nodes, cell_weights = _gauss_legendre(edges)
    log_tau = nodes.ravel()
    log_joint, tau2, v, m, precision = _log_joint_over_log_tau(
        log_tau, y, sigma2, mu_scale, tau_scale)
    peak = log_joint.max()
    unnormalised = cell_weights.ravel() * np.exp(log_joint - peak)
    evidence_scaled = unnormalised.sum()
    weights = unnormalised / evidence_scaled          # posterior weight of each node
    log_evidence = peak + math.log(evidence_scaled)

    def mean_and_sd(values, conditional_variance=0.0):
        """Law of total variance over the nodes: E[Var | s] + Var[E | s]."""
        mean = weights @ values
        variance = weights @ (conditional_variance + (values - mean) ** 2)
        return mean, math.sqrt(variance)

    # ---- log tau and tau: quantiles from the CDF of s ----
    cell_mass = (cell_weights * np.exp(log_joint.reshape(nodes.shape) - peak)).sum(axis=1)
    cell_mass /= evidence_scaled
    cdf_at_edges = np.concatenate([[0.0], np.cumsum(cell_mass)])

    def cdf(s):
        cell = int(np.clip(np.searchsorted(edges, s) - 1, 0, edges.size - 2))
        half_width = 0.5 * (s - edges[cell])
        inner = edges[cell] + half_width * (_GL_NODES + 1.0)
        partial = half_width * (_GL_WEIGHTS @ np.exp(log_density(inner) - peak))
        return cdf_at_edges[cell] + partial / evidence_scaled

    log_tau_quantiles = {}
    for label, probability in _QUANTILES.items():
        # The cell where the cumulative mass first reaches p, widened by one cell
        # on each side so that rounding at a cell edge cannot break the bracket.
        cell = int(np.searchsorted(cdf_at_edges, probability)) - 1
        low_edge = edges[max(cell - 1, 0)]
        high_edge = edges[min(cell + 2, edges.size - 1)]
        from scipy import optimize  # imported here: it costs 0.2 s at import

        log_tau_quantiles[label] = optimize.brentq(
            lambda s: cdf(s) - probability, low_edge, high_edge,
            xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)

    posterior = {}
    mu_mean, mu_sd = mean_and_sd(m, 1.0 / precision)
    log_tau_mean, log_tau_sd = mean_and_sd(log_tau)
    tau = np.exp(log_tau)
    tau_mean = weights @ tau
    tau_sd = (math.sqrt(weights @ (tau - tau_mean) ** 2) if finite_tau_variance
              else math.inf)

    # ---- mu, theta_j and nu_j: mixtures of normals over the nodes ----
    sigma2_row = sigma2[None, :]
    tau2_col = tau2[:, None]
    theta_mean = (tau2_col * y[None, :] + sigma2_row * m[:, None]) / v
    theta_var = sigma2_row * tau2_col / v + sigma2_row**2 / (v**2 * precision[:, None])
    nu_mean = np.sqrt(tau2_col) * (y[None, :] - m[:, None]) / v
    nu_var = sigma2_row / v + tau2_col / (v**2 * precision[:, None])
    mixture_means = np.concatenate([m[None, :], theta_mean.T, nu_mean.T])
    mixture_sds = np.sqrt(np.concatenate([1.0 / precision[None, :], theta_var.T, nu_var.T]))
    # The lightest nodes (far in the tails), together holding less than 1e-15 of
    # the mass, cannot move a quantile at the accuracy we report; dropping them
    # makes the root finding several times cheaper.
    order = np.argsort(weights)
    heavy = np.sort(order[np.cumsum(weights[order]) > 1e-15])
    mixture_q = _mixture_quantiles(weights[heavy] / weights[heavy].sum(),
                                   mixture_means[:, heavy], mixture_sds[:, heavy],
                                   list(_QUANTILES.values()))

    posterior["mu"] = _summary(mu_mean, mu_sd, *mixture_q[0])
    posterior["tau"] = _summary(tau_mean, tau_sd,
                                *(math.exp(log_tau_quantiles[k]) for k in _QUANTILES))
    posterior["log_tau"] = _summary(log_tau_mean, log_tau_sd,
                                    *(log_tau_quantiles[k] for k in _QUANTILES))
    theta_means = weights @ theta_mean
    theta_sds = np.sqrt(weights @ (theta_var + (theta_mean - theta_means) ** 2))
    nu_means = weights @ nu_mean
    nu_sds = np.sqrt(weights @ (nu_var + (nu_mean - nu_means) ** 2))
    for j in range(n_groups):
        posterior[f"theta[{j}]"] = _summary(theta_means[j], theta_sds[j], *mixture_q[1 + j])
    for j in range(n_groups):
        posterior[f"nu[{j}]"] = _summary(nu_means[j], nu_sds[j],
                                         *mixture_q[1 + n_groups + j])
    return {"posterior": posterior, "log_evidence": float(log_evidence)}
