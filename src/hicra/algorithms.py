"""Core RL algorithms of hicra: group advantages, HICRA amplification, control token masks, policy loss.

Pure torch: nothing here imports a trainer. Every function is small and side-effect free (inputs are never
modified; only out-of-place tensor operations are used, so an update can never silently land on a copy).

Notation: a batch holds B sampled responses (rollouts), padded to T tokens. ``response_mask[b, t]`` is True on
the real response tokens of rollout b. Rollouts answering the same prompt form a *group* (``group_ids``).

Equations (G = the rollouts of one group, n = |G|, r_i = scalar reward of rollout i):

* GRPO          A_i = (r_i - mean_G(r)) / (std_G(r) + eps)     std unbiased (Bessel), as verl
* Dr.GRPO       A_i =  r_i - mean_G(r)                          (what the HICRA paper writes)
* RLOO          A_i =  r_i - mean_{j in G, j != i}(r_j) = n / (n - 1) * (r_i - mean_G(r))
* HICRA         A'_{i,t} = A_{i,t} + alpha * |A_{i,t}|  if token t of rollout i is a planning token, else A_{i,t}
* masks         which tokens get A + alpha|A|: MASK_SOURCES, ``amplification_mask`` (planning, high-entropy,
                placebo, placebo-mass, planning+entropy, gated)
* PPO loss      L_{i,t} = max(-A_{i,t} rho_{i,t}, -A_{i,t} clip(rho_{i,t}, 1 - eps_low, 1 + eps_high)),
                rho_{i,t} = exp(logp_{i,t} - logp_old_{i,t})

See docs/algorithms.md for defaults and every difference from verl 0.9.1 and TRL 1.16.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Sequence
from typing import Any

import torch

__all__ = [
    "AGGREGATIONS",
    "grpo_advantages",
    "drgrpo_advantages",
    "rloo_advantages",
    "hicra_advantages",
    "high_entropy_mask",
    "placebo_mask",
    "mass_matched_placebo_mask",
    "MASK_SOURCES",
    "MASK_SOURCE_ALIASES",
    "ENTROPY_MASK_SOURCES",
    "LOGPROB_MASK_SOURCES",
    "HIGH_ENTROPY_QUANTILE",
    "GATED_ENTROPY_TOP",
    "canonical_mask_source",
    "planning_rate",
    "planning_ratio",
    "gradient_mass",
    "gated_mask",
    "amplification_mask",
    "policy_loss",
    "k3_kl",
]

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")

# Log-ratios (and the k3 estimator's log-ratio) are clamped to this range before exp(), as verl does, so that a
# far-off-policy token cannot overflow the ratio.
_LOG_RATIO_CLAMP = 20.0
# verl clamps the per-token k3 KL estimate to [-10, 10]; we do the same so the KL term matches verl's.
_K3_CLAMP = 10.0


# ----------------------------------------------------------------------------------------------------------------
# group advantages
# ----------------------------------------------------------------------------------------------------------------


def _as_rewards(rewards: Any) -> torch.Tensor:
    """Rewards as a 1-D floating tensor (dtype kept if already floating, else float32); rejects NaN/inf."""
    r = rewards if isinstance(rewards, torch.Tensor) else torch.as_tensor(rewards)
    if not torch.is_floating_point(r):
        r = r.to(torch.float32)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B], got shape {tuple(r.shape)}")
    bad = ~torch.isfinite(r)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"reward at index {i} is not finite ({float(r[i])}); rewards must be finite numbers")
    return r


def _group_index(group_ids: Any, batch_size: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Map hashable group ids (ints, strings, ...) to dense indices 0..K-1 in order of first appearance."""
    if isinstance(group_ids, torch.Tensor):
        ids: Sequence[Hashable] = group_ids.reshape(-1).tolist()
    elif hasattr(group_ids, "tolist"):  # numpy arrays: numpy scalars -> python scalars (hashable, comparable)
        ids = group_ids.tolist()
    else:  # a list of 0-d tensors would hash by identity, making every rollout its own group: use their values
        ids = [g.item() if isinstance(g, torch.Tensor) and g.dim() == 0 else g for g in group_ids]
    if len(ids) != batch_size:
        raise ValueError(f"group_ids has {len(ids)} entries but rewards has {batch_size}")
    dense: dict[Hashable, int] = {}
    try:
        index = [dense.setdefault(g, len(dense)) for g in ids]
    except TypeError:  # e.g. a list per rollout, or a [B, k] array
        bad = next(g for g in ids if not isinstance(g, Hashable))
        raise TypeError(f"group_ids must hold one hashable id per rollout (an int or a string), got a "
                        f"{type(bad).__name__} {bad!r:.40}") from None
    return torch.tensor(index, dtype=torch.long, device=device), len(dense)


def _group_stats(r: torch.Tensor, g: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Per-rollout group statistics, gathered back to [B]: size n, mean, unbiased std, and 'all equal' flag."""
    zeros = torch.zeros(k, dtype=r.dtype, device=r.device)
    n = torch.zeros(k, dtype=torch.long, device=r.device).index_add(0, g, torch.ones_like(g))
    mean = zeros.index_add(0, g, r) / n.to(r.dtype)
    dev = r - mean[g]
    # two-pass variance (as torch.std): sum of squared deviations / (n - 1); singleton groups get 0 here
    ssd = zeros.index_add(0, g, dev * dev)
    std = torch.sqrt(ssd / (n - 1).clamp(min=1).to(r.dtype))
    # An all-equal group must give exact zeros; r - mean can be off by one ulp (e.g. three rewards of 0.1),
    # and that rounding error divided by (std + eps) would be a spurious non-zero advantage.
    gmin = torch.full((k,), math.inf, dtype=r.dtype, device=r.device).scatter_reduce(0, g, r, "amin")
    gmax = torch.full((k,), -math.inf, dtype=r.dtype, device=r.device).scatter_reduce(0, g, r, "amax")
    return {"n": n[g], "mean": mean[g], "dev": dev, "std": std[g], "flat": (gmin == gmax)[g]}


def _group_relative(rewards: Any, group_ids: Any, advantage) -> torch.Tensor:
    """`advantage(r, stats)` per rollout, with exact zeros for all-equal and singleton groups (no baseline).

    The group statistics and the advantage are computed in float64 and cast back to the rewards' dtype at the end:
    in bf16 (8 bits of mantissa) or for large float32 rewards the group mean is off by up to an ulp, which is of
    the order of the deviations themselves (bf16 rewards [1, 1, 1, 1.0078125] would otherwise give advantages that
    do not sum to 0)."""
    r = _as_rewards(rewards)
    g, k = _group_index(group_ids, r.shape[0], r.device)
    if r.shape[0] == 0:
        return r.clone()
    r64 = r.to(torch.float64)
    s = _group_stats(r64, g, k)
    adv = advantage(r64, s)
    return torch.where(s["flat"] | (s["n"] < 2), torch.zeros_like(adv), adv).to(r.dtype)


def grpo_advantages(rewards: Any, group_ids: Any, scale: str = "std", eps: float = 1e-6) -> torch.Tensor:
    """GRPO group-relative advantages, one scalar per rollout.

    With scale="std" (the original GRPO, and verl's ``norm_adv_by_std_in_grpo=True``):

        A_i = (r_i - mean_G(r)) / (std_G(r) + eps),   std_G(r) = sqrt(sum_{j in G} (r_j - mean_G(r))^2 / (n - 1))

    With scale="none" (Dr.GRPO; what the HICRA paper writes):  A_i = r_i - mean_G(r).

    Edge cases:
      * a group whose rewards are all equal gets exact zeros (never NaN, never rounding noise; verl 0.9.1 gives
        |A| = 7e-3 for seven float32 rewards of 0.1: the mean's rounding error over a ~1e-8 std);
      * a singleton group (n = 1) gets 0: it has no baseline. verl 0.9.1 instead uses mean 0 and std 1 there, so it
        returns r_i / (1 + eps) (or r_i), i.e. it trains on the raw reward.

    Args:
        rewards: [B] rewards (tensor, list or numpy array); must be finite, else ValueError naming the first bad index.
        group_ids: [B] group of each rollout: ints, strings or any hashable (tensor, list or numpy array).
        scale: "std" or "none".
        eps: added to the group std before dividing (scale="std" only).

    Returns:
        [B] advantages, on rewards' device, in rewards' dtype (float32 if rewards were not floating); the group
        statistics are computed in float64 whatever the rewards' dtype.
    """
    if scale not in ("std", "none"):
        raise ValueError(f"scale must be 'std' or 'none', got {scale!r}")
    if scale == "none":
        return _group_relative(rewards, group_ids, lambda r, s: s["dev"])
    return _group_relative(rewards, group_ids, lambda r, s: s["dev"] / (s["std"] + eps))


def drgrpo_advantages(rewards: Any, group_ids: Any) -> torch.Tensor:
    """Dr.GRPO advantages, A_i = r_i - mean_G(r) (no std division; arXiv 2503.20783).

    This is the advantage the HICRA paper writes (GRPO without std normalisation) and the project's default.
    Same edge cases as :func:`grpo_advantages`: all-equal and singleton groups get zeros.
    """
    return grpo_advantages(rewards, group_ids, scale="none")


def rloo_advantages(rewards: Any, group_ids: Any) -> torch.Tensor:
    """RLOO advantages: reward minus the mean reward of the *other* rollouts of the group (arXiv 2402.14740).

        A_i = r_i - 1/(n-1) * sum_{j in G, j != i} r_j  =  n / (n - 1) * (r_i - mean_G(r))

    All-equal groups get exact zeros; singleton groups get 0 (no other rollout to compare with; verl 0.9.1's
    ``compute_rloo_outcome_advantage`` returns the raw reward there).
    """
    def leave_one_out(r: torch.Tensor, s: dict) -> torch.Tensor:
        n = s["n"].to(r.dtype)
        return s["dev"] * n / (n - 1).clamp(min=1)

    return _group_relative(rewards, group_ids, leave_one_out)


# ----------------------------------------------------------------------------------------------------------------
# HICRA
# ----------------------------------------------------------------------------------------------------------------


def _as_bool_mask(mask: Any, name: str) -> torch.Tensor:
    """A [B, T] boolean mask; 0/1 integer or float masks are accepted and converted."""
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(mask)
    if m.dim() != 2:
        raise ValueError(f"{name} must be 2-D [B, T], got shape {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if bool(((m != 0) & (m != 1)).any()):
            raise ValueError(f"{name} must be boolean or contain only 0 and 1")
        m = m != 0
    return m


def _as_float_tensor(values: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    """A floating tensor as it is. Anything else (a list, an array, an integer tensor) as a tensor of `like`'s dtype
    and device when `like` is given, else of its own floating dtype (a float64 array stays float64) or torch's
    default float dtype."""
    if isinstance(values, torch.Tensor) and values.is_floating_point():
        return values
    if like is not None:
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)
    values = torch.as_tensor(values)
    return values if values.is_floating_point() else values.to(torch.get_default_dtype())


def _token_advantages(advantages: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Broadcast [B] sequence advantages to [B, T] (a view, never written to), or check a [B, T] tensor's shape."""
    if advantages.dim() == 1:
        if advantages.shape[0] != shape[0]:
            raise ValueError(f"advantages has {advantages.shape[0]} rows, the masks have {shape[0]}")
        return advantages.unsqueeze(-1).expand(shape)
    if advantages.shape != shape:
        raise ValueError(
            f"advantages shape {tuple(advantages.shape)} does not match the masks' {tuple(shape)}"
        )
    return advantages


def hicra_advantages(advantages: torch.Tensor, planning_mask: Any, alpha: float) -> torch.Tensor:
    """HICRA: amplify the advantage of planning tokens (Wang et al., arXiv 2509.03646).

        A'_{i,t} = A_{i,t} + alpha * |A_{i,t}|   if token t of rollout i is a planning token
        A'_{i,t} = A_{i,t}                       otherwise

    Equivalently A' = A * (1 + alpha * sign(A)) on planning tokens: x(1+alpha) for rollouts with positive
    advantage, x(1-alpha) for negative ones. For 0 <= alpha < 1 the sign never flips. alpha = 0 is exactly GRPO.

    Args:
        advantages: [B] (one value per rollout, broadcast over its tokens) or [B, T].
        planning_mask: [B, T] bool, True on planning tokens.
        alpha: amplification, 0 <= alpha < 1 (the paper uses 0.2), else ValueError.

    Returns:
        A new [B, T] tensor (a floating tensor's or array's dtype, a tensor's device; lists and integers become
        torch's default float dtype); the input is never modified.
    """
    alpha = check_option("alpha", alpha)
    advantages = _as_float_tensor(advantages)
    mask = _as_bool_mask(planning_mask, "planning_mask").to(advantages.device)
    _token_advantages(advantages, mask.shape)  # shape checks
    # For [B] input the amplified value is computed once per rollout and broadcast ([B, 1]), so the only [B, T]
    # pass is the final select; the values are the same as computing A + alpha*|A| token by token.
    a = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    # torch.where builds a fresh tensor: no in-place write into an indexed copy that could be silently dropped.
    return torch.where(mask, a + alpha * a.abs(), a)


# ----------------------------------------------------------------------------------------------------------------
# control masks
# ----------------------------------------------------------------------------------------------------------------


def _generator(generator: Any) -> torch.Generator:
    """A torch.Generator as it is, or a new CPU one seeded with an integer seed (Python or numpy); TypeError else."""
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}")
    return generator


def _share_count(share: float, n: int, name: str) -> int:
    share = float(share)
    if not 0.0 <= share <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {share}")
    # round half up; the tiny slack absorbs float error such as 0.3 * 10 = 3.0000000000000004 or 2.9999999999999996
    return min(n, int(math.floor(share * n + 0.5 + 1e-9)))


def high_entropy_mask(entropies: torch.Tensor, response_mask: Any, quantile: float) -> torch.Tensor:
    """The top-``quantile`` share of highest-entropy response tokens of the whole batch ("forking tokens").

        k = round(quantile * N),   N = number of response tokens in the batch
        mask = the k response tokens with the largest entropy

    Exactly k tokens are selected; ties at the boundary go to the earlier token (row-major order), so the result
    is deterministic. Padding tokens are never selected, whatever their entropy value; NaN entropies rank last
    (as in ``hicra.planning.metrics.top_quantile_mask``, whose measurement takes ceil(q * N) tokens, not round).
    TRL 1.16's ``get_high_entropy_mask`` instead keeps every token with entropy >= the interpolated (1-q)
    quantile, which can select one token more or fewer than round(q * N), and all tied tokens.

    Args:
        entropies: [B, T] per-token entropies.
        response_mask: [B, T] bool, True on response tokens.
        quantile: share q in [0, 1] of response tokens to select (e.g. 0.2 for the 80/20 forking-token rule).
    """
    mask = _as_bool_mask(response_mask, "response_mask").to(entropies.device)
    if entropies.shape != mask.shape:
        raise ValueError(
            f"entropies shape {tuple(entropies.shape)} does not match response_mask {tuple(mask.shape)}"
        )
    flat_mask = mask.reshape(-1)
    positions = flat_mask.nonzero().squeeze(-1)  # response-token positions, row-major
    k = _share_count(quantile, positions.numel(), "quantile")
    values = entropies.detach().reshape(-1)[positions]
    # a NaN entropy is no evidence of a fork: rank it below every real value (torch's sort would put it first)
    values = torch.nan_to_num(values, nan=-math.inf)
    # stable descending sort: equal entropies keep position order, so ties go to the earlier token
    order = torch.sort(values, descending=True, stable=True).indices[:k]
    selected = torch.zeros_like(flat_mask)
    selected = selected.index_fill(0, positions[order], True)
    return selected.reshape(mask.shape)


def placebo_mask(response_mask: Any, rate: float, generator: torch.Generator | int) -> torch.Tensor:
    """Random control mask: round(rate * N) response tokens of the batch, drawn uniformly without replacement.

    Used in control runs to match HICRA's planning-token rate with tokens that carry no planning meaning.
    The count is exact (not Bernoulli), so a placebo run amplifies exactly as many tokens as the HICRA run whose
    rate it copies. Padding tokens are never selected. Deterministic for a given generator state.

    Args:
        response_mask: [B, T] bool, True on response tokens.
        rate: share of response tokens to select, in [0, 1].
        generator: a CPU ``torch.Generator`` (its state advances) or an int seed.
    """
    mask = _as_bool_mask(response_mask, "response_mask")
    generator = _generator(generator)
    flat_mask = mask.reshape(-1)
    positions = flat_mask.nonzero().squeeze(-1)
    k = _share_count(rate, positions.numel(), "rate")
    pick = torch.randperm(positions.numel(), generator=generator, device=generator.device)[:k]
    selected = torch.zeros_like(flat_mask).index_fill(0, positions[pick.to(positions.device)], True)
    return selected.reshape(mask.shape)


def mass_matched_placebo_mask(response_mask: Any, planning_mask: Any, logprobs: torch.Tensor, advantages: Any,
                              generator: torch.Generator | int) -> torch.Tensor:
    """Random control mask matched on update mass, not on token count: non-planning response tokens taken in a
    uniformly random order until their update weight reaches the planning tokens'.

    With g_t = 1 - p_t (the gradient on the sampled token's logit, ``gradient_mass``) and w_t = |A_t| g_t:

        target   = sum_{planning & response} w_t
        order    = a uniformly random permutation of the non-planning response tokens
        mass(k)  = sum of w over the first k tokens of order
        mask     = the first k tokens of order, k = the shortest prefix whose |mass(k) - target| is smallest

    Amplifying it adds alpha * mass(k) to the update (A + alpha|A| on the mask), as much as amplifying the planning
    tokens adds (alpha * target) up to one token's weight, so HICRA minus this placebo asks whether *where* the
    extra update goes matters, not *how much* there is. **Limit:** when the planning tokens hold more than half of
    the batch's update (target > the other tokens' total), every non-planning token with weight is taken and the
    placebo falls short of HICRA; ``gradient_mass(..., mask, ...)["update_change"]`` against alpha times the
    planning tokens' ``update_share`` shows by how much. The count-matched ``placebo_mask`` adds less wherever
    planning tokens carry more than their share of the update (in the lab at the warm start: 10% of tokens, about
    35% of the update). Padding and planning tokens are never selected. Deterministic for a given generator state
    (one ``torch.randperm`` draw per call, whatever the target).

    Args:
        response_mask: [B, T] bool, True on response tokens.
        planning_mask: [B, T] bool planning-token mask (the mass to match).
        logprobs: [B, T] log-probabilities of the sampled tokens under the sampling policy (padding: any value).
        advantages: [B] or [B, T] advantages before amplification.
        generator: a CPU ``torch.Generator`` (its state advances) or an int seed.

    Returns:
        [B, T] bool on response_mask's device. ValueError when the shapes differ or a response token's log-prob or
        advantage is not finite.
    """
    resp = _as_bool_mask(response_mask, "response_mask")
    plan = _as_bool_mask(planning_mask, "planning_mask").to(resp.device)
    if plan.shape != resp.shape or logprobs.shape != resp.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)}, response_mask {tuple(resp.shape)} and planning_mask "
                         f"{tuple(plan.shape)} must have one shape")
    plan = plan & resp
    generator = _generator(generator)
    adv = _token_advantages(torch.as_tensor(advantages, dtype=torch.float64, device=resp.device), resp.shape)
    weight = adv.abs() * _sampled_logit_gradient(logprobs.to(device=resp.device, dtype=torch.float64))
    if not bool(torch.isfinite(weight[resp]).all()):
        raise ValueError("a response token's log-prob or advantage is not finite: its update mass is unknown")
    weight = torch.where(resp, weight, torch.zeros_like(weight)).reshape(-1)  # padding may hold anything
    target = float((weight * plan.reshape(-1)).sum())
    positions = (resp & ~plan).reshape(-1).nonzero().squeeze(-1)
    order = torch.randperm(positions.numel(), generator=generator, device=generator.device).to(positions.device)
    positions = positions[order]
    cum = torch.cat([weight.new_zeros(1), weight[positions].cumsum(0)])  # cum[k] = mass(k), nondecreasing

    def first(value: torch.Tensor) -> int:  # the shortest prefix whose mass reaches `value`
        return int(torch.searchsorted(cum, value.reshape(1).to(cum.dtype)))

    k = min(first(torch.tensor(target)), positions.numel())
    if k > 0 and abs(float(cum[k - 1]) - target) <= abs(float(cum[k]) - target):
        k -= 1
    k = first(cum[k])  # ties and zero-weight tokens: the shortest prefix with the same mass
    flat = torch.zeros(resp.numel(), dtype=torch.bool, device=resp.device).index_fill(0, positions[:k], True)
    return flat.reshape(resp.shape)


# ----------------------------------------------------------------------------------------------------------------
# amplification masks: the one vocabulary of "which tokens get A + alpha|A|"
# ----------------------------------------------------------------------------------------------------------------

MASK_SOURCES = ("planning", "high-entropy", "placebo", "placebo-mass", "planning+entropy", "gated")
# older names, still accepted everywhere a mask source is named
MASK_SOURCE_ALIASES = {"sg": "planning", "sg+entropy": "planning+entropy"}
# the sources that need per-token entropies
ENTROPY_MASK_SOURCES = ("high-entropy", "planning+entropy", "gated")
# the sources that need the sampled tokens' behaviour log-probs
LOGPROB_MASK_SOURCES = ("placebo-mass",)
# the high-entropy ("forking token") share of a batch: the 80/20 rule of Wang et al. (arXiv 2506.01939)
HIGH_ENTROPY_QUANTILE = 0.2
# gated: a token is selected when its entropy exceeds its response's (1 - 0.3) quantile (TRL PR #4997)
GATED_ENTROPY_TOP = 0.3


# The ranges of the numeric amplification options, checked in one place (`option_problem`) by every entry point:
# the functions below, the lab, TRL's HICRAConfig and verl's HICRALoss / HICRAPlumbing / `+hicra` options.
OPTION_RANGES = {
    "alpha": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),  # below 1: A + alpha|A| never flips the sign of A
    "entropy_quantile": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "placebo_rate": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] or unset"),  # unset (None): the batch's planning rate
}


def option_problem(name: str, value: Any) -> str | None:
    """Why `value` is not a valid amplification option `name` ("alpha", "entropy_quantile" or "placebo_rate"), as
    one line that starts with the name, e.g. "alpha must be in [0, 1), got 1.5"; None when it is valid. A
    placebo_rate of None is valid; NaN, booleans and values that are not numbers are not."""
    if value is None and name == "placebo_rate":
        return None
    test, rule = OPTION_RANGES[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool):
        return f"{name} must be a number {rule}, got {value!r}"
    return None if test(number) else f"{name} must be {rule}, got {value!r}"  # NaN fails every comparison


def check_option(name: str, value: Any) -> float | None:
    """`value` as a float (None for an unset placebo_rate); ValueError with `option_problem`'s line otherwise."""
    problem = option_problem(name, value)
    if problem:
        raise ValueError(problem)
    return None if value is None else float(value)


def canonical_mask_source(name: str) -> str:
    """The canonical name of a mask source (aliases resolved); ValueError naming the known ones otherwise."""
    name = MASK_SOURCE_ALIASES.get(name, name)
    if name not in MASK_SOURCES:
        known = ", ".join([*MASK_SOURCES, *MASK_SOURCE_ALIASES])
        raise ValueError(f"mask source must be one of {known}; got {name!r}")
    return name


def planning_ratio(planning_mask: Any, response_mask: Any) -> float:
    """Share of response tokens that are planning tokens (the metrics' and `PlanningTagger.planning_ratio`'s
    quantity, from masks): the placebo's default rate. `planning_rate` is the same function under its old name.

        ratio = sum(planning & response) / max(1, sum(response))          (0.0 for a batch without response tokens)
    """
    plan = _as_bool_mask(planning_mask, "planning_mask")
    resp = _as_bool_mask(response_mask, "response_mask").to(plan.device)
    if plan.shape != resp.shape:
        raise ValueError(f"planning_mask shape {tuple(plan.shape)} does not match response_mask {tuple(resp.shape)}")
    return float((plan & resp).sum()) / max(1, int(resp.sum()))


planning_rate = planning_ratio  # the old name (one name per concept: planning_ratio)


def _sampled_logit_gradient(logprobs: torch.Tensor) -> torch.Tensor:
    """g_t = 1 - p_t (clamped at 0): the size of the log-prob gradient on the sampled token's own logit, its
    gradient mass (``gradient_mass``, ``mass_matched_placebo_mask``). Same shape and dtype as `logprobs`."""
    return (1.0 - logprobs.detach().exp()).clamp(min=0.0)


def gradient_mass(logprobs: torch.Tensor, response_mask: Any, mask: Any, advantages: Any,
                  alpha: float) -> dict[str, float]:
    """How much of a batch's policy gradient a token mask holds, and how much amplifying it changes the update.

    The gradient of log p(y_t) on the sampled token's own logit is (1 - p_t) (divided by the sampling temperature,
    which cancels in every ratio below), so g_t = 1 - p_t is a token's gradient mass and |A_t| g_t the size of its
    policy-gradient term. With M the mask, R the response tokens and A' = A + alpha|A| on M (``hicra_advantages``):

        token_share          = |M & R| / |R|
        gradient_mass_share  = sum_{M & R} g_t / sum_R g_t
        update_share         = sum_{M & R} |A_t| g_t / sum_R |A_t| g_t
        update_change        = sum_R |A'_t - A_t| g_t / sum_R |A_t| g_t  =  alpha * update_share

    update_change is the relative L1 change of the per-token gradient weights on the sampled logits: 0.03 means
    amplifying M changes the update by about 3%. (The paper's planning tokens are 2-5% of response tokens; the
    study issue asks for these three figures at the warm start.)

    Args:
        logprobs: [B, T] log-probabilities of the sampled tokens under the sampling policy (behaviour log-probs).
        response_mask: [B, T] bool, True on response tokens (padding may hold any value, NaN included).
        mask: [B, T] bool, the tokens amplified (e.g. planning tokens).
        advantages: [B] or [B, T] advantages before amplification.
        alpha: the amplification (0 <= alpha < 1, else ValueError).

    Returns:
        {"token_share" (``planning_ratio`` of the mask), "gradient_mass_share", "update_share", "update_change"};
        a mass or update share whose denominator is 0 is NaN.
    """
    alpha = check_option("alpha", alpha)
    resp = _as_bool_mask(response_mask, "response_mask")
    m = _as_bool_mask(mask, "mask").to(resp.device) & resp
    if m.shape != resp.shape or logprobs.shape != resp.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)}, response_mask {tuple(resp.shape)} and mask "
                         f"{tuple(m.shape)} must have one shape")
    adv = _token_advantages(torch.as_tensor(advantages, dtype=logprobs.dtype, device=logprobs.device), resp.shape)
    g = torch.where(resp, _sampled_logit_gradient(logprobs), 0.0)  # padding may hold anything, NaN included
    weight = torch.where(resp, adv.abs(), 0.0) * g

    def ratio(num: torch.Tensor, den: torch.Tensor) -> float:
        return float(num / den) if float(den) > 0 else float("nan")

    share = ratio((weight * m).sum(), weight.sum())
    return {"token_share": planning_ratio(m, resp),
            "gradient_mass_share": ratio((g * m).sum(), g.sum()), "update_share": share,
            "update_change": alpha * share}


def _sequence_advantages(advantages: Any, response_mask: torch.Tensor) -> torch.Tensor:
    """[B] per-response advantage: the [B] input as is, or the mean over response tokens of a [B, T] input."""
    a = advantages if isinstance(advantages, torch.Tensor) else torch.as_tensor(advantages)
    a = a.to(response_mask.device)
    if a.dim() == 1:
        if a.shape[0] != response_mask.shape[0]:
            raise ValueError(f"advantages has {a.shape[0]} rows, response_mask has {response_mask.shape[0]}")
        return a
    if a.shape != response_mask.shape:
        raise ValueError(f"advantages shape {tuple(a.shape)} does not match response_mask {tuple(response_mask.shape)}")
    m = response_mask.to(a.dtype)
    return (a * m).sum(-1) / m.sum(-1).clamp(min=1)


def gated_mask(entropies: torch.Tensor, response_mask: Any, advantages: Any, group_ids: Any,
               planning_mask: Any = None, top: float = GATED_ENTROPY_TOP) -> torch.Tensor:
    """The token rule of the closed TRL pull request #4997 ("HICRATrainer"), written from its description.

    With A_i the advantage of response i, L_i its number of response tokens, G(i) its group and H_{i,t} the entropy
    of its token t:

        touched(G)   = any_{j in G} A_j > 0                       (groups without a positive response are untouched)
        eligible(i)  = touched(G(i)) and A_i > 0 and L_i > mean_{j in G(i)} L_j
        tau_i        = quantile(H_{i, response tokens}, 1 - top)  (linear interpolation; NaN entropies ignored)
        mask_{i,t}   = eligible(i) and H_{i,t} > tau_i
                       or (planning_mask given) touched(G(i)) and planning_{i,t}

    only on response tokens. Amplifying the mask with ``hicra_advantages`` gives the PR's A * (1 + alpha sign(A)):
    planning tokens of failed responses in a touched group get A * (1 - alpha). The PR leaves its strategic-gram
    term off by default; pass ``planning_mask`` to switch it on.

    Args:
        entropies: [B, T] per-token entropies (nats).
        response_mask: [B, T] bool, True on response tokens.
        advantages: [B] per response, or [B, T] (reduced to the mean over each response's tokens).
        group_ids: [B] group of each response (ints, strings or any hashable).
        planning_mask: optional [B, T] bool planning-token mask (the strategic-gram term).
        top: share of each response's tokens above its threshold, in (0, 1].

    Returns:
        [B, T] bool.
    """
    mask = _as_bool_mask(response_mask, "response_mask").to(entropies.device)
    if entropies.shape != mask.shape:
        raise ValueError(f"entropies shape {tuple(entropies.shape)} does not match response_mask {tuple(mask.shape)}")
    top = float(top)
    if not 0.0 < top <= 1.0:
        raise ValueError(f"top must be in (0, 1], got {top}")
    adv = _sequence_advantages(advantages, mask).detach()
    g, k = _group_index(group_ids, mask.shape[0], mask.device)
    lengths = mask.sum(-1).to(torch.float64)
    n = torch.zeros(k, dtype=torch.float64, device=mask.device).index_add(0, g, torch.ones_like(lengths))
    mean_len = torch.zeros(k, dtype=torch.float64, device=mask.device).index_add(0, g, lengths) / n
    touched = torch.zeros(k, dtype=torch.bool, device=mask.device).index_fill(0, g[adv > 0], True)[g]
    eligible = touched & (adv > 0) & (lengths > mean_len[g])
    h = entropies.detach().to(torch.float64)
    tau = torch.nanquantile(torch.where(mask, h, torch.full_like(h, math.nan)), 1.0 - top, dim=-1, keepdim=True)
    selected = eligible[:, None] & mask & (h > tau)  # NaN comparisons are False: an all-NaN row selects nothing
    if planning_mask is not None:
        plan = _as_bool_mask(planning_mask, "planning_mask").to(mask.device)
        if plan.shape != mask.shape:
            raise ValueError(f"planning_mask shape {tuple(plan.shape)} does not match {tuple(mask.shape)}")
        selected = selected | (touched[:, None] & plan & mask)
    return selected


def amplification_mask(
    source: str,
    response_mask: Any,
    *,
    planning_mask: Any = None,
    entropies: torch.Tensor | None = None,
    advantages: Any = None,
    group_ids: Any = None,
    entropy_quantile: float = HIGH_ENTROPY_QUANTILE,
    placebo_rate: float | None = None,
    generator: torch.Generator | int | None = None,
    gated_planning: bool = False,
    logprobs: torch.Tensor | None = None,
) -> torch.Tensor:
    """The [B, T] mask of tokens whose advantage HICRA amplifies (A' = A + alpha|A| there), by mask source.

    ==================  ==============================================================  ===============================
    source              mask_{i,t} (always only on response tokens)                     needs
    ==================  ==============================================================  ===============================
    planning            planning_{i,t}: the token overlaps a strategic gram (the HICRA  planning_mask
                        paper, arXiv 2509.03646)
    high-entropy        the round(q N) highest-entropy response tokens of the batch,    entropies
                        q = entropy_quantile (forking tokens, arXiv 2506.01939)
    placebo             round(r N) response tokens drawn uniformly, r = placebo_rate,   planning_mask (or placebo_rate),
                        default the batch's planning ratio (``planning_ratio``)           generator
    placebo-mass        ``mass_matched_placebo_mask``: random non-planning tokens whose   planning_mask, logprobs,
                        update mass |A|(1 - p) matches the planning tokens'              advantages, generator
    planning+entropy    planning_{i,t} and high-entropy_{i,t}                           planning_mask, entropies
    gated               ``gated_mask``: the rule of the closed TRL PR #4997             entropies, advantages,
                        (planning term only with gated_planning=True)                   group_ids
    ==================  ==============================================================  ===============================

    N is the number of response tokens in the batch. ``sg`` and ``sg+entropy`` are accepted for planning and
    planning+entropy. Padding is never selected.

    Args:
        source: a name in MASK_SOURCES or MASK_SOURCE_ALIASES (else ValueError).
        response_mask: [B, T] bool, True on response tokens.
        planning_mask: [B, T] bool planning-token mask.
        entropies: [B, T] per-token entropies.
        advantages: [B] or [B, T] advantages (gated only).
        group_ids: [B] group of each response (gated only).
        entropy_quantile: q for high-entropy and planning+entropy.
        placebo_rate: share of response tokens for placebo; None = the batch's planning rate.
        generator: CPU ``torch.Generator`` or int seed for placebo.
        gated_planning: gated also selects the planning tokens of every response of a touched group.
        logprobs: [B, T] behaviour log-probs of the sampled tokens (placebo-mass only).

    Returns:
        [B, T] bool on response_mask's device. A source whose inputs are missing raises ValueError naming them.
    """
    source = canonical_mask_source(source)
    resp = _as_bool_mask(response_mask, "response_mask")

    def need(**inputs: Any) -> None:
        missing = [k for k, v in inputs.items() if v is None]
        if missing:
            raise ValueError(f"mask source {source!r} needs {', '.join(missing)}")

    plan = None
    if planning_mask is not None:
        plan = _as_bool_mask(planning_mask, "planning_mask").to(resp.device)
        if plan.shape != resp.shape:
            raise ValueError(
                f"planning_mask shape {tuple(plan.shape)} does not match response_mask {tuple(resp.shape)}")
        plan = plan & resp
    if source == "planning":
        need(planning_mask=plan)
        return plan
    if source == "placebo":
        if placebo_rate is None:
            need(planning_mask=plan)
            placebo_rate = planning_ratio(plan, resp)
        need(generator=generator)
        return placebo_mask(resp.cpu(), placebo_rate, generator).to(resp.device)
    if source == "placebo-mass":
        need(planning_mask=plan, logprobs=logprobs, advantages=advantages, generator=generator)
        return mass_matched_placebo_mask(resp.cpu(), plan.cpu(), logprobs.detach().cpu(),
                                         torch.as_tensor(advantages).detach().cpu(), generator).to(resp.device)
    need(entropies=entropies)
    if source == "gated":
        need(advantages=advantages, group_ids=group_ids)
        if gated_planning:
            need(planning_mask=plan)
        return gated_mask(entropies, resp, advantages, group_ids, plan if gated_planning else None).to(resp.device)
    high = high_entropy_mask(entropies, resp, entropy_quantile).to(resp.device)
    if source == "high-entropy":
        return high
    need(planning_mask=plan)
    return high & plan


# ----------------------------------------------------------------------------------------------------------------
# policy loss
# ----------------------------------------------------------------------------------------------------------------


def _aggregate(loss_mat: torch.Tensor, mask: torch.Tensor, aggregation: str, horizon: int) -> torch.Tensor:
    """Reduce a [B, T] per-token loss to a scalar (padding excluded), with verl's definitions.

    token-mean:               sum_{i,t} m L / sum_{i,t} m
    seq-mean-token-mean:      mean over non-empty rollouts i of (sum_t m L / sum_t m)
    seq-mean-token-sum-norm:  mean over non-empty rollouts i of (sum_t m L), divided by a constant horizon
                              (Dr.GRPO; the constant is the maximum response length)
    """
    summed = torch.where(mask, loss_mat, torch.zeros_like(loss_mat))  # garbage at padding cannot leak in
    if aggregation == "token-mean":
        return summed.sum() / mask.sum().clamp(min=1)
    tokens = mask.sum(-1)
    non_empty = tokens > 0
    n_seq = non_empty.sum().clamp(min=1)
    if aggregation == "seq-mean-token-mean":
        per_seq = summed.sum(-1) / tokens.clamp(min=1)
        return torch.where(non_empty, per_seq, torch.zeros_like(per_seq)).sum() / n_seq
    if aggregation == "seq-mean-token-sum-norm":
        return summed.sum(-1).sum() / n_seq / horizon
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    n = int(mask.sum())
    return float(torch.where(mask, x, torch.zeros_like(x)).sum() / n) if n else float("nan")


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref) (Schulman 2020), clamped as verl's ``low_var_kl``.

    d = clamp(logp_ref - logp, -20, 20),   k3 = clamp(exp(d) - d - 1, -10, 10)
    """
    d = (ref_logprobs - logprobs).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    return (torch.exp(d) - d - 1.0).clamp(-_K3_CLAMP, _K3_CLAMP)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: Any,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    aggregation: str = "token-mean",
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    planning_mask: Any = None,
    max_response_length: int | None = None,
    *,
    clip_ratio_c: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate with asymmetric ("clip-higher", DAPO) clipping, plus an optional k3 KL penalty.

        rho  = exp(clamp(logp - logp_old, -20, 20))
        L_pg = max(-A * rho, -A * clip(rho, 1 - clip_low, 1 + clip_high))          per token
        (dual clip, only if clip_ratio_c is set, for A < 0:  L_pg = min(L_pg, -A * clip_ratio_c))
        L    = agg(L_pg) + kl_coef * agg(k3(logp, logp_ref))

    ``agg`` is one of AGGREGATIONS (see ``_aggregate``); padding tokens never contribute, whatever they hold. For
    "seq-mean-token-sum-norm" the constant divisor is ``max_response_length`` (default: T, the padded length), as
    verl's ``loss_scale_factor``. The loss and its gradient equal verl 0.9.1's ``compute_policy_loss_vanilla``
    (plus its ``kl_penalty(..., "low_var_kl")`` KL loss) for the same clip ratios.

    Args:
        logprobs: [B, T] log-probs of the sampled tokens under the current policy (requires grad when training).
        old_logprobs: [B, T] log-probs under the behaviour policy (treated as constants).
        advantages: [B] or [B, T] (e.g. the output of hicra_advantages), treated as constants.
        response_mask: [B, T] bool, True on response tokens.
        clip_low, clip_high: the ratio is clipped to [1 - clip_low, 1 + clip_high].
        aggregation: "token-mean" | "seq-mean-token-mean" | "seq-mean-token-sum-norm".
        ref_logprobs: [B, T] reference-policy log-probs; needed when kl_coef != 0 (otherwise only reported).
        kl_coef: weight of the k3 KL term.
        planning_mask: [B, T] bool; if given, stats report the mean advantage on planning vs execution tokens.
        max_response_length: Dr.GRPO's constant normaliser; defaults to T.
        clip_ratio_c: optional dual-clip constant (> 1) for negative advantages; verl's default is 3.0, ours None.

    Returns:
        (loss, stats): a scalar tensor, and a dict of floats: pg_loss, kl_loss (if ref_logprobs given),
        clip_frac_low (A < 0 and rho < 1 - clip_low), clip_frac_high (A > 0 and rho > 1 + clip_high),
        clip_frac_dual, approx_kl (mean of logp_old - logp, verl's ppo_kl), and with a planning mask
        adv_planning, adv_execution, planning_ratio (share of response tokens that are planning tokens).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if not 0.0 <= clip_low < 1.0 or not clip_high >= 0.0:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if clip_ratio_c is not None and not clip_ratio_c > 1.0:
        raise ValueError(f"clip_ratio_c must be > 1, got {clip_ratio_c}")
    if kl_coef != 0.0 and ref_logprobs is None:
        raise ValueError("kl_coef != 0 needs ref_logprobs")
    mask = _as_bool_mask(response_mask, "response_mask").to(logprobs.device)
    for name, x in (("logprobs", logprobs), ("old_logprobs", old_logprobs), ("ref_logprobs", ref_logprobs)):
        if x is not None and x.shape != mask.shape:
            raise ValueError(
                f"{name} shape {tuple(x.shape)} does not match response_mask {tuple(mask.shape)}"
            )
    horizon = mask.shape[-1] if max_response_length is None else int(max_response_length)
    if horizon <= 0:
        raise ValueError(f"max_response_length must be positive, got {horizon}")

    # advantages hold zeros at padding before any product, so that whatever padding held (NaN, inf) reaches neither
    # the loss nor, by 0 * NaN in a backward pass, the gradient ([B] advantages: a row without response tokens; the
    # [B, T] view stays a view). Log-probs need no such step: the clamp passes no gradient through a NaN.
    adv = _as_float_tensor(advantages, like=logprobs).detach()
    if adv.dim() == 1 and adv.shape[0] == mask.shape[0]:
        adv = _token_advantages(torch.where(mask.any(dim=-1), adv, 0.0), mask.shape)
    else:
        adv = torch.where(mask, _token_advantages(adv, mask.shape), 0.0)
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(-adv * ratio, -adv * clipped)
    dual = torch.zeros_like(mask)
    if clip_ratio_c is not None:
        dual = (adv < 0) & (pg > -adv * clip_ratio_c)
        pg = torch.where(adv < 0, torch.minimum(pg, -adv * clip_ratio_c), pg)
    pg_loss = _aggregate(pg, mask, aggregation, horizon)
    loss = pg_loss

    with torch.no_grad():
        stats = {
            "pg_loss": float(pg_loss.detach()),
            "clip_frac_low": _masked_mean(((adv < 0) & (ratio < clipped)).to(ratio.dtype), mask),
            "clip_frac_high": _masked_mean(((adv > 0) & (ratio > clipped)).to(ratio.dtype), mask),
            "clip_frac_dual": _masked_mean(dual.to(ratio.dtype), mask),
            "approx_kl": _masked_mean(-log_ratio, mask),
        }
    if ref_logprobs is not None:
        kl_loss = _aggregate(k3_kl(logprobs, ref_logprobs.detach()), mask, aggregation, horizon)
        stats["kl_loss"] = float(kl_loss.detach())
        if kl_coef != 0.0:
            loss = loss + kl_coef * kl_loss
    if planning_mask is not None:
        plan = _as_bool_mask(planning_mask, "planning_mask").to(mask.device)
        if plan.shape != mask.shape:
            raise ValueError(f"planning_mask shape {tuple(plan.shape)} does not match {tuple(mask.shape)}")
        stats["adv_planning"] = _masked_mean(adv, mask & plan)
        stats["adv_execution"] = _masked_mean(adv, mask & ~plan)
        stats["planning_ratio"] = _masked_mean(plan.to(adv.dtype), mask)
    stats["loss"] = float(loss.detach())
    return loss, stats
