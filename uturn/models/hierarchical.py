r"""The normal-normal hierarchical model, for any number of groups J.

.. math::

    \mu &\sim \mathcal N(0, s_\mu^2) \\
    \tau &\sim \text{Half-Cauchy}(0, s_\tau) \\
    \theta_j &\sim \mathcal N(\mu, \tau^2), \qquad j = 1, \dots, J \\
    y_j &\sim \mathcal N(\theta_j, \sigma_j^2) \qquad (\sigma_j \text{ known})

The sampler works on unconstrained coordinates. Both parametrizations put
:math:`\mu` and :math:`\log\tau` first:

* centered: ``(mu, log_tau, theta[0], ..., theta[J-1])``;
* non-centered: ``(mu, log_tau, nu[0], ..., nu[J-1])`` with
  :math:`\theta_j = \mu + \tau\nu_j` and :math:`\nu_j \sim \mathcal N(0, 1)`.

Both describe the same posterior of :math:`(\mu, \tau, \theta)`; they differ only
in the geometry the sampler sees. The centered form has a funnel between
:math:`\log\tau` and :math:`\theta` when the data are weakly informative (as for
eight schools), which makes HMC diverge; the non-centered form removes it.

How the data reach the compiled code
------------------------------------
The log density and its gradient are written once, as module-level numba
kernels (``_centered_logp_grad``, ``_noncentered_logp_grad``) that take the data
as arguments and are cached on disk. A model then needs only a one-line wrapper
``logp_grad(x, grad)`` that closes over the data and calls the kernel. Numba
freezes closed-over arrays as constants: for arrays up to 1 MB their bytes are
embedded in the compiled code, above that numba refers to the array's memory
(which the wrapper keeps alive). The data are packed into one ``(2, J)`` array
(``y`` and ``1/sigma^2``), so the embedded constant never exceeds 1 MB.

Measured on the 2-core development machine (numba 0.68, fresh process after
``import uturn``, time to build the model, compile its wrapper and call it once;
``benchmarks/models.py``): about 0.3 s for the first model in a process (mostly
numba's own start-up; the kernels load from the cache), then about 0.1 s per
further model, for J = 8 and for J = 100,000 alike. Embedding J = 100,000 as
constants instead would add ~0.1 s of compile time per model. The wrapper
is *not* cached on disk: numba keys a closure's cache entry on the captured
values, so every data set would add a cache file (holding up to 1 MB of
embedded data) to save well under 0.1 s.

The kernels use ``error_model="numpy"``: a float division by zero gives
``inf``/``nan`` as in numpy (caught by the finiteness check, so the point is
rejected with ``-inf``) instead of raising ``ZeroDivisionError`` inside the
sampler, and no branch guards each division.
"""
import math
import numbers

import numba
import numpy as np

from ..model import Model, _read_only

__all__ = ["hierarchical_normal"]

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------
# scalar helpers (inlined by LLVM)
# ---------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _all_finite(logp, sum_of_gradient):
    """Whether the log density and every gradient entry are finite.

    One sum over the gradient, accumulated in the main loop, is non-finite as
    soon as any entry is (Stan's check on initial values does the same); it
    also trips if finite entries overflow when added, which happens only at
    absurd magnitudes (~1e308).
    """
    return math.isfinite(logp) and math.isfinite(sum_of_gradient)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _reject(grad):
    """Mark a point outside the numerically representable support.

    Overflow (e.g. ``exp(-log_tau)`` for ``log_tau < -709``) or a NaN coordinate
    gives a NaN or infinite log density or gradient; the sampler must see
    ``-inf`` (a divergence), never NaN or ``+inf``. The gradient is zeroed so
    that no NaN leaks out.
    """
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    return -np.inf


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _hyperprior(mu, log_tau, tau_over_scale, mu_precision, log_tau_scale):
    r"""Log prior of (mu, log_tau) with the Jacobian of tau = exp(log_tau), and its gradient.

    ``log N(mu | 0, s_mu) + log HalfCauchy(tau | s_tau) + log_tau`` without the
    constants: ``-mu^2 / (2 s_mu^2) - log(1 + r^2) + log_tau`` with
    ``r = tau / s_tau``; the derivative of ``log(1 + r^2)`` in ``log_tau`` is
    ``2 r^2 / (1 + r^2)``.

    ``r`` comes from the caller, which has computed ``tau`` or ``1/tau`` anyway:
    this saves the two ``exp`` calls a softplus and a sigmoid of
    ``2 (log_tau - log s_tau)`` would cost (a third of the whole call at J = 8).
    For ``r >= 1``, ``r^2`` is factored out of ``log(1 + r^2)`` so nothing
    overflows; ``r = inf`` or ``0`` (tau over- or underflowed) give the right limits.
    """
    if tau_over_scale >= 1.0:
        inv_r2 = 1.0 / (tau_over_scale * tau_over_scale)
        log1p_r2 = 2.0 * (log_tau - log_tau_scale) + math.log1p(inv_r2)
        r2_share = 1.0 / (1.0 + inv_r2)             # r^2 / (1 + r^2)
    else:                                           # also NaN, which then propagates
        r2 = tau_over_scale * tau_over_scale
        log1p_r2 = math.log1p(r2)
        r2_share = r2 / (1.0 + r2)
    logp = -0.5 * mu_precision * mu * mu - log1p_r2 + log_tau
    d_mu = -mu_precision * mu
    d_log_tau = 1.0 - 2.0 * r2_share
    return logp, d_mu, d_log_tau


# ---------------------------------------------------------------------------
# the two kernels: cost linear in J, no allocation
# ---------------------------------------------------------------------------

# The sums over groups may be reassociated (and multiply-adds fused), which lets the
# compiler split each into vector lanes: in order, each of the five sums is a chain of
# dependent additions, about 4 cycles per group; in lanes the J = 1,000 gradient is
# several times faster (benchmarks/models.py). Only these two flags: without
# "nnan"/"ninf" the compiler still honours NaN and infinity, so the finiteness check
# below still sees every overflow. The sums run in a loop that stores nothing and the
# gradient is written in a second loop that sums nothing: a loop that does both is
# vectorised behind a runtime check that x and grad do not overlap, and where the
# check fails (arrays a few elements apart) it falls back to the in-order loop, so
# the sums' last bits, and with them a chain's draws, depended on where the arrays
# lay in memory (eight schools: two different gradients over 577 layouts).
_SUMS_IN_ANY_ORDER = {"reassoc", "contract"}

@numba.njit(cache=True, nogil=True, fastmath=_SUMS_IN_ANY_ORDER, error_model="numpy")
def _centered_logp_grad(x, grad, y, inv_sigma2, mu_precision, tau_scale, log_tau_scale,
                        log_normalizer):
    r"""Centered log density at ``x = (mu, log_tau, theta_0..theta_{J-1})``.

    .. math::

        \log p = -\frac{\mu^2}{2 s_\mu^2} - \log(1 + \tau^2/s_\tau^2) + \log\tau
                 - \sum_j \Big[\frac{(\theta_j - \mu)^2}{2\tau^2} + \log\tau\Big]
                 - \sum_j \frac{(y_j - \theta_j)^2}{2\sigma_j^2} + \text{const}

    Gradient, with :math:`z_j = (\theta_j - \mu)/\tau` and
    :math:`r_j = (y_j - \theta_j)/\sigma_j^2`:
    :math:`\partial_\mu = -\mu/s_\mu^2 + \sum_j z_j/\tau`,
    :math:`\partial_{\log\tau} = 1 - 2\tau^2/(\tau^2 + s_\tau^2) + \sum_j z_j^2 - J`,
    :math:`\partial_{\theta_j} = r_j - z_j/\tau`.
    """
    n_groups = y.shape[0]
    mu = x[0]
    log_tau = x[1]
    # Standardise by multiplying with 1/tau (not dividing by tau^2): exp(-log_tau)
    # overflows only for log_tau < -709, exp(-2 log_tau) already below -354.
    inv_tau = math.exp(-log_tau)
    logp, d_mu, d_log_tau = _hyperprior(mu, log_tau, 1.0 / (inv_tau * tau_scale),
                                        mu_precision, log_tau_scale)
    sum_z2 = 0.0
    sum_grad = 0.0
    for j in range(n_groups):  # sums only: see _SUMS_IN_ANY_ORDER
        theta = x[2 + j]
        z = (theta - mu) * inv_tau
        residual = y[j] - theta
        scaled_residual = residual * inv_sigma2[j]
        sum_z2 += z * z
        logp -= 0.5 * residual * scaled_residual
        d_mu += z * inv_tau
        sum_grad += scaled_residual - z * inv_tau
    for j in range(n_groups):
        theta = x[2 + j]
        grad[2 + j] = (y[j] - theta) * inv_sigma2[j] - ((theta - mu) * inv_tau) * inv_tau
    logp += log_normalizer - 0.5 * sum_z2 - n_groups * log_tau
    d_log_tau += sum_z2 - n_groups
    grad[0] = d_mu
    grad[1] = d_log_tau
    if not _all_finite(logp, sum_grad + d_mu + d_log_tau):
        return _reject(grad)
    return logp


@numba.njit(cache=True, nogil=True, fastmath=_SUMS_IN_ANY_ORDER, error_model="numpy")
def _noncentered_logp_grad(x, grad, y, inv_sigma2, mu_precision, tau_scale,
                           log_tau_scale, log_normalizer):
    r"""Non-centered log density at ``x = (mu, log_tau, nu_0..nu_{J-1})``.

    .. math::

        \log p = -\frac{\mu^2}{2 s_\mu^2} - \log(1 + \tau^2/s_\tau^2) + \log\tau
                 - \sum_j \frac{\nu_j^2}{2}
                 - \sum_j \frac{(y_j - \mu - \tau\nu_j)^2}{2\sigma_j^2} + \text{const}

    Gradient, with :math:`r_j = (y_j - \mu - \tau\nu_j)/\sigma_j^2`:
    :math:`\partial_\mu = -\mu/s_\mu^2 + \sum_j r_j`,
    :math:`\partial_{\log\tau} = 1 - 2\tau^2/(\tau^2 + s_\tau^2) + \tau\sum_j r_j\nu_j`,
    :math:`\partial_{\nu_j} = \tau r_j - \nu_j`.
    """
    n_groups = y.shape[0]
    mu = x[0]
    log_tau = x[1]
    tau = math.exp(log_tau)
    logp, d_mu, d_log_tau = _hyperprior(mu, log_tau, tau / tau_scale, mu_precision,
                                        log_tau_scale)
    sum_nu2 = 0.0
    sum_r_nu = 0.0
    sum_grad = 0.0
    for j in range(n_groups):  # sums only: see _SUMS_IN_ANY_ORDER
        nu = x[2 + j]
        residual = y[j] - (mu + tau * nu)
        scaled_residual = residual * inv_sigma2[j]
        sum_nu2 += nu * nu
        logp -= 0.5 * residual * scaled_residual
        d_mu += scaled_residual
        sum_r_nu += scaled_residual * nu
        sum_grad += tau * scaled_residual - nu
    for j in range(n_groups):
        nu = x[2 + j]
        grad[2 + j] = tau * ((y[j] - (mu + tau * nu)) * inv_sigma2[j]) - nu
    logp += log_normalizer - 0.5 * sum_nu2
    d_log_tau += tau * sum_r_nu
    grad[0] = d_mu
    grad[1] = d_log_tau
    if not _all_finite(logp, sum_grad + d_mu + d_log_tau):
        return _reject(grad)
    return logp


# ---------------------------------------------------------------------------
# input checks (shared with the exact posterior)
# ---------------------------------------------------------------------------

def _as_real_vector(values, name):
    """A float64 copy of ``values`` as a 1-D array, or a clear TypeError/ValueError."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a 1-D array of real numbers, got a string")
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name} must be a 1-D array of real numbers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array (one value per group), "
                         f"got shape {array.shape}")
    if array.shape[0] < 1:
        raise ValueError(f"{name} must have at least one group, got an empty array")
    # np.array copies: the model must not change if the caller later edits theirs.
    array = np.array(array, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array))
        raise ValueError(f"{name} must be finite; {name}[{bad[0]}] = {array[bad[0]]}")
    return array


def _as_positive_scale(value, name):
    """A positive finite float, or a clear TypeError/ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def _check_data(y, sigma, mu_scale, tau_scale):
    """Validated copies of the model inputs: (y, sigma, mu_scale, tau_scale)."""
    y = _as_real_vector(y, "y")
    sigma = _as_real_vector(sigma, "sigma")
    if y.shape != sigma.shape:
        raise ValueError(f"y and sigma must have the same length (one pair per group), "
                         f"got {y.shape[0]} and {sigma.shape[0]}")
    if not np.all(sigma > 0.0):
        bad = int(np.flatnonzero(~(sigma > 0.0))[0])
        raise ValueError(f"sigma must be positive (it is a standard deviation); "
                         f"sigma[{bad}] = {sigma[bad]}")
    mu_scale = _as_positive_scale(mu_scale, "mu_scale")
    tau_scale = _as_positive_scale(tau_scale, "tau_scale")
    return y, sigma, mu_scale, tau_scale


def _log_normalizer(sigma, mu_scale, tau_scale):
    r"""The constant that makes ``logp_grad`` the log joint density ``log p(y, x)``.

    :math:`-\tfrac12\log 2\pi - \log s_\mu + \log\frac{2}{\pi s_\tau}
    - J \log 2\pi - \sum_j \log\sigma_j`: one normal and one half-Cauchy for the
    hyperparameters, J normals for the groups and J for the data. It is the same
    in both parametrizations, so both integrate to the evidence p(y).
    """
    n_groups = sigma.shape[0]
    return (-0.5 * _LOG_2PI - math.log(mu_scale)
            + math.log(2.0 / (math.pi * tau_scale))
            - n_groups * _LOG_2PI - float(np.sum(np.log(sigma))))


# ---------------------------------------------------------------------------
# the public factory
# ---------------------------------------------------------------------------

def _make_logp_grad(kernel, packed_data, mu_precision, tau_scale, log_normalizer):
    """A per-model ``logp_grad(x, grad)`` that calls ``kernel`` with this model's data.

    ``packed_data`` is a C-contiguous ``(2, J)`` array: row 0 is ``y``, row 1 is
    ``1 / sigma^2``. The scalars are frozen as compile-time constants.
    """
    log_tau_scale = math.log(tau_scale)

    @numba.njit(nogil=True, fastmath=False, error_model="numpy")
    def logp_grad(x, grad):
        return kernel(x, grad, packed_data[0], packed_data[1], mu_precision, tau_scale,
                      log_tau_scale, log_normalizer)

    return logp_grad


def hierarchical_normal(y, sigma, centered=True, mu_scale=5.0, tau_scale=5.0):
    r"""The normal-normal hierarchical model as a :class:`uturn.Model`.

    .. math::

        \mu \sim \mathcal N(0, s_\mu^2), \quad
        \tau \sim \text{Half-Cauchy}(0, s_\tau), \quad
        \theta_j \sim \mathcal N(\mu, \tau^2), \quad
        y_j \sim \mathcal N(\theta_j, \sigma_j^2), \quad j = 1..J.

    The sampler sees :math:`\log\tau` (the log density includes the Jacobian
    :math:`\log\tau` of :math:`\tau = e^{\log\tau}`) and either the group effects
    :math:`\theta_j` themselves (centered) or their standardised versions
    :math:`\nu_j = (\theta_j - \mu)/\tau \sim \mathcal N(0, 1)` (non-centered).

    The log density is normalised: it is :math:`\log p(y, x)` for the
    unconstrained coordinates x, so it integrates over x to the evidence
    :math:`p(y)` (see :func:`uturn.models.exact_posterior`). A point where the
    density under- or overflows (e.g. ``log_tau < -709``) returns ``-inf`` with a
    zero gradient, never NaN.

    Parameters
    ----------
    y : array_like, shape (J,)
        Observed group estimates, finite. Copied: later changes to the caller's
        array do not affect the model.
    sigma : array_like, shape (J,)
        Known standard errors of ``y``, finite and positive.
    centered : bool, default True
        Centered (``theta`` as coordinates) or non-centered (``nu``) form.
    mu_scale : float, default 5.0
        Prior standard deviation :math:`s_\mu` of :math:`\mu`.
    tau_scale : float, default 5.0
        Scale :math:`s_\tau` of the half-Cauchy prior on :math:`\tau`.

    Returns
    -------
    uturn.Model
        ``dim = J + 2``; names ``mu``, ``log_tau``, then ``theta[0]``... or
        ``nu[0]``...; ``constrain`` gives ``mu``, ``tau``, ``log_tau``, ``theta``
        (shape ``(..., J)``) and, non-centered, ``nu``; ``data`` holds ``y`` and
        ``sigma``. The model also carries ``centered``, ``mu_scale`` and
        ``tau_scale`` attributes.

    Raises
    ------
    TypeError
        If ``y`` or ``sigma`` are not real numeric arrays, a scale is not a real
        number, or ``centered`` is not a bool.
    ValueError
        If ``y`` and ``sigma`` are not 1-D with the same length of at least 1,
        contain non-finite values, ``sigma`` is not positive, or a scale is not
        positive and finite.

    References
    ----------
    Gelman, A., Carlin, J. B., Stern, H. S., Dunson, D. B., Vehtari, A. and
    Rubin, D. B. (2013). *Bayesian Data Analysis*, 3rd ed., section 5.4.

    Papaspiliopoulos, O., Roberts, G. O. and Sköld, M. (2007). A general
    framework for the parametrization of hierarchical models. *Statistical
    Science* 22(1), 59-73.

    Betancourt, M. and Girolami, M. (2015). Hamiltonian Monte Carlo for
    hierarchical models. In *Current Trends in Bayesian Methodology with
    Applications*, CRC Press.

    Examples
    --------
    >>> import numpy as np, uturn
    >>> model = uturn.models.hierarchical_normal([28., 8, -3], [15., 10, 16], centered=False)
    >>> model.names
    ['mu', 'log_tau', 'nu[0]', 'nu[1]', 'nu[2]']
    """
    if not isinstance(centered, (bool, np.bool_)):
        raise TypeError(f"centered must be True or False, got {centered!r}")
    centered = bool(centered)
    y, sigma, mu_scale, tau_scale = _check_data(y, sigma, mu_scale, tau_scale)
    n_groups = y.shape[0]

    packed_data = np.ascontiguousarray(np.stack([y, 1.0 / sigma**2]))
    kernel = _centered_logp_grad if centered else _noncentered_logp_grad
    logp_grad = _make_logp_grad(kernel, packed_data, 1.0 / mu_scale**2, tau_scale,
                                _log_normalizer(sigma, mu_scale, tau_scale))

    group = "theta" if centered else "nu"
    names = ["mu", "log_tau"] + [f"{group}[{j}]" for j in range(n_groups)]
    dim = n_groups + 2

    def constrain(draws):
        r"""Named quantities from unconstrained draws of shape ``(..., J + 2)``.

        ``tau = exp(log_tau)``; non-centered, ``theta = mu + tau * nu``. ``mu``,
        ``log_tau`` and ``nu`` (centered: ``theta``) are read-only views of ``draws``.
        """
        draws = np.asarray(draws, dtype=np.float64)
        if draws.ndim < 1 or draws.shape[-1] != dim:
            raise ValueError(f"draws must have shape (..., {dim}), got {draws.shape}")
        # Read-only views, not copies: at J = 100,000 a copy of nu is 3.2 GB.
        mu = _read_only(draws[..., 0])
        log_tau = _read_only(draws[..., 1])
        tau = np.exp(log_tau)
        out = {"mu": mu, "tau": tau, "log_tau": log_tau}
        if centered:
            out["theta"] = _read_only(draws[..., 2:])
        else:
            nu = _read_only(draws[..., 2:])
            out["theta"] = mu[..., None] + tau[..., None] * nu
            out["nu"] = nu
        return out

    model = Model(logp_grad, dim, names=names, constrain=constrain,
                  data={"y": y.copy(), "sigma": sigma.copy()})
    # Kept so that the exact posterior of *this* model can be computed:
    # exact_posterior(model.data["y"], model.data["sigma"], model.mu_scale, model.tau_scale).
    model.centered = centered
    model.mu_scale = mu_scale
    model.tau_scale = tau_scale
    return model
