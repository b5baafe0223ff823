"""HICRA for verl (Ray, FSDP/Megatron, vLLM rollouts): amplification in the actor's loss, for verl's default (v1)
trainer and its legacy one; plus the legacy `hicra` advantage estimator and its planning-mask plumbing.

The actor loss (both trainers; the recommended way). verl 0.9.1 trains the actor with one loss function in both
trainer paths: `ActorRolloutRefWorker.init_model` binds `verl.workers.utils.losses.ppo_loss` to its config and the
engine calls it per micro-batch as `loss_fn(model_output=..., data=..., dp_group=...)`, where `data` holds the
response token ids (`responses`), `response_mask`, `advantages`, the group id `uid` and, in the v1 trainer, the
old policy's per-token `entropy`. `HICRALoss` wraps that function: it computes the amplification mask of the
micro-batch (`hicra.algorithms.amplification_mask`, any mask source), replaces the advantages with

    A'_{i,t} = A_{i,t} + alpha * |A_{i,t}| * m_{i,t}                     hicra.algorithms.hicra_advantages

and calls verl's loss unchanged (clipping, aggregation, KL and entropy terms stay verl's). Use it with verl's own
`algorithm.adv_estimator=grpo`. `HICRAActorRolloutRefWorker` installs it; `hicra.integrations.verl_main` puts that
worker into either trainer.

The legacy estimator (trainer.use_v1=False only). Importing this module registers `hicra` in verl's registry
(`core_algos.register_adv_est`), so `algorithm.adv_estimator=hicra` selects it:

    A_i      = (r_i - mean_group(r)) [/ (std_group(r) + eps)]       hicra.algorithms.grpo_advantages
    A'_{i,t} = A_i + alpha * |A_i| * m_{i,t},   masked by the response mask      hicra.algorithms.hicra_advantages

std division follows verl's `algorithm.norm_adv_by_std_in_grpo` (set it to False for the paper's form). verl
calls a custom estimator with rewards, response mask, group index and the algorithm config only; the planning mask
m needs the response token ids and a tokenizer. `HICRAPlumbing` wraps verl's `compute_advantage` (the function the
legacy trainer calls on the driver with the full batch): for `adv_estimator == "hicra"` it tags
`batch["responses"]`, stores the mask in `batch["planning_mask"]`, and makes it (and alpha) visible to the estimator
for the duration of that call through a context variable. The same wrapper dumps the batch as rollout rows
(run-directory schema) for `hicra analyze` when `run_dir` is set.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from verl.trainer.ppo.core_algos import register_adv_est

from hicra.algorithms import (
    ENTROPY_MASK_SOURCES,
    HIGH_ENTROPY_QUANTILE,
    LOGPROB_MASK_SOURCES,
    amplification_mask,
    canonical_mask_source,
    check_option,
    grpo_advantages,
    hicra_advantages,
)

ESTIMATOR_NAME = "hicra"
# micro-batches whose random draw HICRALoss remembers, so that another PPO epoch over them draws the same tokens
DRAW_MEMORY = 1024
# batch key under which the installed plumbing keeps the response mask from before verl's rollout correction
SAMPLED_MASK_KEY = "hicra_sampled_response_mask"

# (planning_mask [B, T] bool, alpha) for the compute_advantage call in progress; set by HICRAPlumbing
_CURRENT: contextvars.ContextVar[tuple[torch.Tensor, float] | None] = contextvars.ContextVar(
    "hicra_planning_mask", default=None)


def _config_get(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    if hasattr(config, "get"):
        return config.get(key, default)
    return getattr(config, key, default)


@register_adv_est(ESTIMATOR_NAME)
def compute_hicra_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    epsilon: float = 1e-6,
    config: Any = None,
    planning_mask: torch.Tensor | None = None,
    alpha: float | None = None,
    norm_adv_by_std_in_grpo: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl advantage estimator `hicra` (outcome reward; one scalar per response). Returns (advantages, returns),
    both [B, T] and zero on padding, like verl's GRPO estimator.

    `planning_mask` and `alpha` come from the arguments when given, else from the `HICRAPlumbing` call in
    progress. std division: `norm_adv_by_std_in_grpo` argument, else the config's, else True (verl's default).
    """
    current = _CURRENT.get()
    if planning_mask is None:
        if current is None:
            raise RuntimeError(
                "the 'hicra' advantage estimator needs a planning mask: run verl through "
                "hicra.integrations.verl_main, or call HICRAPlumbing(...).compute_advantage / .install()")
        planning_mask = current[0]
    if alpha is None:
        alpha = current[1] if current is not None else float(_config_get(config, "hicra_alpha", 0.2))
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = bool(_config_get(config, "norm_adv_by_std_in_grpo", True))
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        adv = grpo_advantages(scores, list(index), scale="std" if norm_adv_by_std_in_grpo else "none",
                              eps=epsilon)
        mask = planning_mask.to(response_mask.device).bool() & response_mask.bool()
        token_adv = hicra_advantages(adv.to(token_level_rewards.dtype), mask, alpha) * response_mask
    return token_adv, token_adv


@contextlib.contextmanager
def planning_mask_context(planning_mask: torch.Tensor, alpha: float):
    """Make `planning_mask` and `alpha` visible to the `hicra` estimator inside the block."""
    token = _CURRENT.set((planning_mask, float(alpha)))
    try:
        yield
    finally:
        _CURRENT.reset(token)


class HICRAPlumbing:
    """Gets the planning mask to verl's `hicra` estimator, and dumps rollout rows (see module doc).

    Args:
        tokenizer: the policy's Hugging Face tokenizer (the one verl's rollouts decode with).
        lexicon: preset name, lexicon JSON path or `Lexicon`.
        alpha: HICRA amplification, 0 <= alpha < 1.
        mask_source: "planning" (alias "sg") or "placebo" (random response tokens at the batch's SG rate, or at
            `placebo_rate`). The entropy-based sources need per-token entropies, which the legacy trainer drops
            before computing advantages: use `HICRALoss` (the actor-loss path) for them.
        run_dir: when set, each call writes `run_dir/rollouts/step_XXXXXX_part000.parquet` (+ run.json once).
        correct_threshold: a response counts as correct when its score is >= this (or from an `acc` field).
        seed: placebo sampling seed.
    """

    def __init__(self, tokenizer, lexicon: Any = "paper", alpha: float = 0.2, mask_source: str = "planning",
                 placebo_rate: float | None = None, run_dir: str | Path | None = None,
                 correct_threshold: float = 1.0, seed: int = 0, run_info: dict | None = None):
        from hicra.planning import Lexicon, PlanningTagger

        alpha, placebo_rate = check_option("alpha", alpha), check_option("placebo_rate", placebo_rate)
        mask_source = canonical_mask_source(mask_source)
        if mask_source not in ("planning", "placebo"):
            raise ValueError(f"the legacy estimator takes mask_source 'planning' or 'placebo', got {mask_source!r}; "
                             "the entropy-based sources and placebo-mass need the actor-loss path (HICRALoss)")
        self.tokenizer = tokenizer
        self.lexicon = Lexicon.resolve(lexicon)
        self.tagger = PlanningTagger(self.lexicon, tokenizer)
        self.alpha, self.mask_source, self.placebo_rate = float(alpha), mask_source, placebo_rate
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.correct_threshold = correct_threshold
        self.generator = torch.Generator().manual_seed(seed)
        self.run_info = {"algorithm": "hicra" if alpha > 0 else "grpo", "alpha": self.alpha, "seed": seed,
                         "lexicon": self.lexicon.name, "model": getattr(tokenizer, "name_or_path", None),
                         "task": None, "config": {"backend": "verl", "mask_source": mask_source},
                         **(run_info or {})}
        self.calls = 0
        self.trainer_step: int | None = None  # verl's global step, seen by the installed _get_gen_batch hook
        self._original = None
        self._patched: list[tuple[Any, str, Any]] = []  # (owner, attribute, original) of every installed hook

    # -- masks --------------------------------------------------------------------------------------------------

    def sg_mask(self, responses: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] strategic-gram mask of right-padded `responses` (False on padding)."""
        return self.tagger.padded_masks(responses, response_mask)

    def planning_mask(self, data, sampled_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask used for the advantages, SG mask) for a verl `DataProto` holding `responses`. `sampled_mask`: the
        response mask from before verl's rollout correction zeroed rejected tokens (the SG mask is tagged through
        it, so a rejected response keeps its planning tokens in the rows); default the batch's response mask."""
        if "responses" not in data.batch.keys():
            raise KeyError("the batch has no 'responses': HICRA's plumbing needs the response token ids "
                           "(verl's legacy trainer path, trainer.use_v1=False)")
        responses = data.batch["responses"]
        rmask = data.batch["response_mask"] if "response_mask" in data.batch.keys() else \
            data.batch["attention_mask"][:, -responses.size(1):]
        sg = self.sg_mask(responses, rmask if sampled_mask is None else sampled_mask)
        mask = amplification_mask(self.mask_source, rmask.bool(), planning_mask=sg & rmask.bool(),
                                  placebo_rate=self.placebo_rate, generator=self.generator)
        return mask, sg

    # -- the compute_advantage wrapper --------------------------------------------------------------------------

    def compute_advantage(self, data, adv_estimator, *args, **kwargs):
        """Drop-in for `verl.trainer.ppo.ray_trainer.compute_advantage(data, adv_estimator, ...)`."""
        original = self._original or _verl_compute_advantage()
        name = getattr(adv_estimator, "value", adv_estimator)
        # kept by the installed rollout-correction hook for this call only: not sent on to the workers
        sampled = data.batch.pop(SAMPLED_MASK_KEY) if SAMPLED_MASK_KEY in data.batch.keys() else None
        if name != ESTIMATOR_NAME:
            return original(data, adv_estimator, *args, **kwargs)
        if "response_mask" not in data.batch.keys():
            from verl.trainer.ppo.ray_trainer import compute_response_mask

            data.batch["response_mask"] = compute_response_mask(data)
        mask, sg = self.planning_mask(data, sampled)
        data.batch["planning_mask"] = mask
        with planning_mask_context(mask, self.alpha):
            data = original(data, adv_estimator, *args, **kwargs)
        # verl's global step: the batch's, else the one the installed hook saw this step, else a call count
        step = int(data.meta_info.get("global_steps",
                                      self.trainer_step if self.trainer_step is not None else self.calls))
        self.calls += 1
        if self.run_dir is not None:
            self.dump(data, step, sg)
        return data

    def install(self) -> HICRAPlumbing:
        """Replace `verl.trainer.ppo.ray_trainer.compute_advantage` (what `RayPPOTrainer.fit` calls), and hook two
        more of the legacy trainer's calls: `RayPPOTrainer._get_gen_batch`, which `fit` calls once a step, to read
        the trainer's `global_steps` (the batch handed to `compute_advantage` does not carry it, so rows would be
        numbered by call count, from 0 again after a resume), and verl's rollout correction, to keep the response
        mask from before its rejection sampling zeroes rejected tokens."""
        import verl.trainer.ppo.ray_trainer as ray_trainer
        import verl.trainer.ppo.rollout_corr_helper as corr

        if self._original is not None:
            return self
        self._original = ray_trainer.compute_advantage
        ray_trainer.compute_advantage = self.compute_advantage
        plumbing = self
        get_gen_batch = ray_trainer.RayPPOTrainer._get_gen_batch
        correct = corr.compute_rollout_correction_and_add_to_batch

        def _get_gen_batch(trainer, batch):
            if isinstance(getattr(trainer, "global_steps", None), int):
                plumbing.trainer_step = trainer.global_steps
            return get_gen_batch(trainer, batch)

        def compute_rollout_correction_and_add_to_batch(batch, *args, **kwargs):
            if "response_mask" in batch.batch.keys():
                batch.batch[SAMPLED_MASK_KEY] = batch.batch["response_mask"].clone()
            return correct(batch, *args, **kwargs)

        ray_trainer.RayPPOTrainer._get_gen_batch = _get_gen_batch
        corr.compute_rollout_correction_and_add_to_batch = compute_rollout_correction_and_add_to_batch
        self._patched = [(ray_trainer.RayPPOTrainer, "_get_gen_batch", get_gen_batch),
                         (corr, "compute_rollout_correction_and_add_to_batch", correct)]
        return self

    def uninstall(self) -> None:
        import verl.trainer.ppo.ray_trainer as ray_trainer

        if self._original is not None:
            ray_trainer.compute_advantage = self._original
            self._original = None
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched = []

    # -- rollout rows -------------------------------------------------------------------------------------------

    def dump(self, data, step: int, sg_mask: torch.Tensor | None = None, part: int = 0) -> Path:
        """Write the batch as rollout rows (`rollout_rows`) for step `step`; run.json on the first call."""
        from hicra.dynamics.records import RolloutWriter, write_run_info

        if not (self.run_dir / "run.json").exists():
            write_run_info(self.run_dir, self.run_info)
        rows = rollout_rows(data, self.tokenizer, step, planning_mask=sg_mask,
                            correct_threshold=self.correct_threshold)
        return RolloutWriter(self.run_dir).write_step(step, rows, part=part)


def _verl_compute_advantage():
    from verl.trainer.ppo.ray_trainer import compute_advantage

    return compute_advantage


def rollout_rows(data, tokenizer, step: int, planning_mask: torch.Tensor | None = None,
                 correct_threshold: float = 1.0) -> list[dict]:
    """Rollout rows (run-directory schema) from a verl `DataProto` after rewards: one per response.

    Reads `prompts` (left-padded), `responses` (right-padded; a response runs to its last token attended in the tail
    of `attention_mask`, tool output inside a multi-turn response included, else to the last of `response_mask`),
    scores from `token_level_scores` (else `token_level_rewards`), behaviour log-probs from `rollout_log_probs`
    (else `old_log_probs`), `entropys` when present, the group id from `uid` and correctness from a numeric
    `acc` field when the reward function returned one, else score >= `correct_threshold`."""
    from hicra.dynamics.records import rollout_row

    b = data.batch
    keys = set(b.keys())
    responses = b["responses"]
    t_resp = responses.size(1)
    # a response's length runs to its last attended token: in a multi-turn response the tokens a tool wrote are
    # attended but have response_mask 0, so counting response_mask would cut the response short
    span = (b["attention_mask"][:, -t_resp:] if "attention_mask" in keys else b["response_mask"]).bool()
    positions = torch.arange(1, t_resp + 1, device=span.device)
    lengths = (span * positions).amax(dim=1).tolist()
    prompts = b["prompts"] if "prompts" in keys else None
    pmask = b["attention_mask"][:, : b["attention_mask"].size(1) - t_resp].bool() \
        if "attention_mask" in keys and prompts is not None else None
    score_key = "token_level_scores" if "token_level_scores" in keys else "token_level_rewards"
    scores = b[score_key].sum(-1).tolist()
    lp_key = next((k for k in ("rollout_log_probs", "old_log_probs") if k in keys), None)
    nt = data.non_tensor_batch
    uids = nt.get("uid", np.arange(len(scores)).astype(str))
    acc = nt.get("acc")
    eos = getattr(tokenizer, "eos_token_id", None)
    seen: dict[str, int] = {}
    rows = []
    for i in range(responses.size(0)):
        n = int(lengths[i])
        tok = responses[i, :n].tolist()
        prompt_ids = prompts[i][pmask[i]].tolist() if prompts is not None and pmask is not None else []
        uid = str(uids[i])
        sample_idx = seen.get(uid, 0)
        seen[uid] = sample_idx + 1
        correct = bool(acc[i] > 0.5) if acc is not None else scores[i] >= correct_threshold
        rows.append(rollout_row(
            step=step, prompt_id=uid, sample_idx=sample_idx,
            prompt=tokenizer.decode(prompt_ids, skip_special_tokens=True),
            response=tokenizer.decode(tok, skip_special_tokens=True), token_ids=tok,
            logprobs=b[lp_key][i, :n].float() if lp_key else None,
            entropies=b["entropys"][i, :n].float() if "entropys" in keys else None,
            planning_mask=planning_mask[i, :n] if planning_mask is not None else None,
            reward=float(scores[i]), correct=correct,
            truncated=not (tok and tok[-1] == eos) if eos is not None else False, error_type=None,
        ))
    return rows


# ------------------------------------------------------------------------------------------------------------------
# the actor loss: verl's default (v1) trainer and the legacy one
# ------------------------------------------------------------------------------------------------------------------


def _padded(x: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width]: a nested (jagged) or dense [B, T] tensor, right-padded with zeros or cut to `width`."""
    if x.is_nested:
        x = torch.nested.to_padded_tensor(x, 0.0 if x.is_floating_point() else 0)
    if x.size(1) >= width:
        return x[:, :width]
    return torch.nn.functional.pad(x, (0, width - x.size(1)))


class HICRALoss:
    """verl's actor loss with HICRA-amplified advantages: `HICRALoss(verl_loss_fn, tokenizer, ...)` is a drop-in
    for the `loss_fn` of verl's `ActorRolloutRefWorker` (see the module doc).

    Per micro-batch: m = `amplification_mask(mask_source, response_mask, planning_mask=tagged responses,
    entropies=old-policy entropies (data["entropy"], the v1 trainer) else the current policy's (model_output,
    needs actor.calculate_entropy=True), advantages, group_ids=data["uid"])`, then A' = A + alpha|A| on m (zero on
    padding), then `verl_loss_fn`. Batch-level statistics (the high-entropy quantile, the placebo's planning rate,
    the gated rule's group statistics, placebo-mass's update mass from data["old_log_probs"]) are those of the
    micro-batch the loss sees; planning masks are per token
    and do not depend on it. The random sources (placebo, placebo-mass) draw from one generator seeded by `seed`,
    and a micro-batch seen again (the same response tokens and advantages: another PPO epoch, unshuffled; or the
    same content in a later step) gets the draw it got the first time, as it gets the same planning mask. The last
    `DRAW_MEMORY` micro-batches are remembered (a digest and the generator's state before the draw); one older than
    that draws anew. `gated` compares each response with its group, so its statistics are those of the part of the
    group the micro-batch holds: with `group_size` (rollout.n) given, `hicra/gated_partial_groups` logs the share
    of the micro-batch's groups it holds only in part (verl's batch balancing, dynamic batch sizes and shuffling
    split groups; the driver refuses the settings that do so on the legacy trainer).

    Args:
        loss_fn: verl's loss, called as loss_fn(model_output=..., data=..., dp_group=...).
        tokenizer: the policy's tokenizer (the one verl's rollouts decode with).
        lexicon: preset name, lexicon JSON path or `Lexicon`.
        alpha: 0 <= alpha < 1.
        mask_source: a name of `hicra.algorithms.MASK_SOURCES` (aliases accepted).
        entropy_quantile, placebo_rate, gated_planning: as `amplification_mask`.
        seed: seed of the random sources' draws (offset by the data-parallel rank by the worker).
        group_size: responses per prompt (verl's rollout.n), to report groups `gated` sees in part; None: unreported.
    """

    def __init__(self, loss_fn, tokenizer, lexicon: Any = "paper", alpha: float = 0.2, mask_source: str = "planning",
                 entropy_quantile: float = HIGH_ENTROPY_QUANTILE, placebo_rate: float | None = None,
                 gated_planning: bool = False, seed: int = 0, group_size: int | None = None):
        from hicra.planning import Lexicon, PlanningTagger

        for name, value in (("alpha", alpha), ("entropy_quantile", entropy_quantile), ("placebo_rate", placebo_rate)):
            check_option(name, value)
        self.loss_fn = loss_fn
        self.alpha = float(alpha)
        self.mask_source = canonical_mask_source(mask_source)
        self.entropy_quantile, self.placebo_rate, self.gated_planning = entropy_quantile, placebo_rate, gated_planning
        self.tagger = PlanningTagger(Lexicon.resolve(lexicon), tokenizer)
        self.group_size = group_size
        self.generator = torch.Generator().manual_seed(int(seed))
        self._draws: OrderedDict[bytes, torch.Tensor] = OrderedDict()  # digest -> generator state before its draw

    def _generator(self, responses: torch.Tensor, rmask: torch.Tensor, adv: torch.Tensor) -> torch.Generator:
        """The generator for this micro-batch's draw: the running one for a micro-batch not seen before, else one
        restored to the state the first draw started from."""
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        for row, keep, a in zip(responses.cpu(), rmask.cpu(), adv.detach().cpu(), strict=True):
            digest.update(row[keep].to(torch.int64).numpy().tobytes() + b"|")
            digest.update(a[keep].to(torch.float64).numpy().tobytes() + b"|")
        key = digest.digest()
        state = self._draws.get(key)
        if state is None:
            self._draws[key] = self.generator.get_state()
            if len(self._draws) > DRAW_MEMORY:
                self._draws.popitem(last=False)
            return self.generator
        self._draws.move_to_end(key)
        again = torch.Generator()
        again.set_state(state)
        return again

    def mask(self, data, model_output: dict | None = None) -> dict[str, torch.Tensor]:
        """{"mask", "response_mask", "advantages", "planning_mask"}: [B, T] tensors of one micro-batch (padded)."""
        from verl.utils import tensordict_utils as tu

        rmask_raw = data["response_mask"]
        width = int(rmask_raw.offsets().diff().max()) if rmask_raw.is_nested else rmask_raw.size(1)
        rmask = _padded(rmask_raw, width).bool()
        adv = _padded(data["advantages"], width).float()
        responses = _padded(data["responses"], width)
        planning = self.tagger.padded_masks(responses.cpu(), rmask.cpu()).to(rmask.device)
        entropies = None
        if self.mask_source in ENTROPY_MASK_SOURCES:
            if "entropy" in data.keys():  # the v1 trainer keeps the old policy's entropies in the batch
                entropies = _padded(data["entropy"], width).float()
            elif model_output is not None and model_output.get("entropy") is not None:
                from verl.workers.utils.padding import no_padding_2_padding

                entropies = _padded(no_padding_2_padding(model_output["entropy"], data), width).float().detach()
            else:
                raise ValueError(f"mask source {self.mask_source!r} needs per-token entropies: set "
                                 "actor_rollout_ref.actor.calculate_entropy=True")
        logprobs = None
        if self.mask_source in LOGPROB_MASK_SOURCES:
            if "old_log_probs" not in data.keys():
                raise ValueError(f"mask source {self.mask_source!r} needs the behaviour log-probs 'old_log_probs' "
                                 "in the actor's batch")
            logprobs = _padded(data["old_log_probs"], width).float()
        groups = None
        if self.mask_source == "gated":
            groups = tu.get(data, "uid") if "uid" in data.keys() else None
            if groups is None:
                raise ValueError("mask source 'gated' needs the group id 'uid' in the actor's batch")
            groups = list(groups)
            partial = _partial_groups(groups, self.group_size)
        generator = self._generator(responses, rmask, adv) if self.mask_source in ("placebo", "placebo-mass") \
            else None
        mask = amplification_mask(self.mask_source, rmask, planning_mask=planning, entropies=entropies,
                                  advantages=adv, group_ids=groups, entropy_quantile=self.entropy_quantile,
                                  placebo_rate=self.placebo_rate, generator=generator,
                                  gated_planning=self.gated_planning, logprobs=logprobs)
        out = {"mask": mask, "response_mask": rmask, "advantages": adv, "planning_mask": planning}
        if self.mask_source == "gated" and self.group_size is not None:
            out["partial_groups"] = partial
        return out

    def amplified(self, data, model_output: dict | None = None):
        """A shallow copy of `data` whose `advantages` are HICRA's, in the same layout (nested or dense)."""
        m = self.mask(data, model_output)
        new = hicra_advantages(m["advantages"], m["mask"], self.alpha) * m["response_mask"]
        old = data["advantages"]
        if old.is_nested:  # as verl's response_to_nested: one row per response, its own length
            lengths = old.offsets().diff().tolist()
            new = torch.nested.as_nested_tensor([new[i, :n].to(old.dtype) for i, n in enumerate(lengths)],
                                                layout=torch.jagged)
        else:
            new = _padded(new, old.size(1)).to(old.dtype)
        out = data.copy()
        out.set("advantages", new)
        return out, m

    def __call__(self, model_output, data, dp_group=None, **kwargs):
        from verl.utils.metric import AggregationType, Metric

        data, m = self.amplified(data, model_output)
        loss, metrics = self.loss_fn(model_output=model_output, data=data, dp_group=dp_group, **kwargs)
        n = max(1, int(m["response_mask"].sum()))
        metrics["hicra/amplified_ratio"] = Metric(value=float(m["mask"].sum()) / n, aggregation=AggregationType.MEAN)
        metrics["hicra/planning_ratio"] = Metric(value=float((m["planning_mask"] & m["response_mask"]).sum()) / n,
                                                 aggregation=AggregationType.MEAN)
        if "partial_groups" in m:
            metrics["hicra/gated_partial_groups"] = Metric(value=m["partial_groups"], aggregation=AggregationType.MEAN)
        return loss, metrics


# the group id verl's v1 trainer gives the no-op samples it appends to make a batch divisible ("pad" + a uuid's hex)
_PADDING_UID = re.compile(r"pad[0-9a-f]{32}")


def _partial_groups(groups: list, group_size: int | None) -> float:
    """Share of a micro-batch's groups (verl's padding samples left out) that it holds with another number of
    responses than `group_size`: split by verl's batching, or cut short by the rollout. 0.0 when unknown."""
    counts = Counter(str(g) for g in groups if not _PADDING_UID.fullmatch(str(g)))
    if not group_size or not counts:
        return 0.0
    return sum(n != group_size for n in counts.values()) / len(counts)


def hicra_worker_class(options: dict):
    """A subclass of verl's `ActorRolloutRefWorker` whose actor loss is `HICRALoss(verl's loss, **options)`.

    `options`: HICRALoss keyword arguments (lexicon, alpha, mask_source, entropy_quantile, placebo_rate,
    gated_planning, seed). The class carries them to the Ray worker processes."""
    from verl.single_controller.base.decorator import Dispatch, register
    from verl.workers.engine_workers import ActorRolloutRefWorker

    opts = dict(options)
    canonical_mask_source(opts.get("mask_source", "planning"))  # fail on the driver, not in every worker

    class HICRAActorRolloutRefWorker(ActorRolloutRefWorker):
        hicra_options = opts

        @register(dispatch_mode=Dispatch.ONE_TO_ALL)
        def init_model(self):
            super().init_model()
            if self.actor is not None:
                from transformers import AutoTokenizer

                model = self.config.model
                tokenizer = AutoTokenizer.from_pretrained(
                    str(model.get("tokenizer_path") or model.path),
                    trust_remote_code=bool(model.get("trust_remote_code", False)))
                kwargs = dict(self.hicra_options)
                kwargs["seed"] = int(kwargs.get("seed", 0)) + int(getattr(self, "rank", 0))
                self.loss_fn = HICRALoss(self.loss_fn, tokenizer, **kwargs)
                self.actor.set_loss_fn(self.loss_fn)

    return HICRAActorRolloutRefWorker
