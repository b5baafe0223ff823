"""HICRA for TRL (one machine, any Hugging Face causal LM): `HICRAConfig`, `HICRATrainer`, `RolloutLogger`.

How it plugs in. TRL's `GRPOTrainer._generate_and_score_completions` samples a group of completions per prompt,
scores them and returns a batch dict with `advantages` of shape [B]. Its loss (`_compute_loss`) accepts [B] or
[B, T] advantages ("to support subclasses that provide advantages with shape (B, T)"). `HICRATrainer` overrides
that one method: it calls TRL's, builds the [B, T] planning mask for the sampled `completion_ids`, and replaces
the advantages with

    A'_{i,t} = A_i + alpha * |A_i| * m_{i,t}              (hicra.algorithms.hicra_advantages)

so TRL's own clipped objective, loss aggregation, KL and logging all stay in force. With alpha = 0 the batch
is exactly TRL's. The group advantage A_i is TRL's (its `scale_rewards` switch decides the std division;
`HICRAConfig` defaults to "none", the paper's form). `_calculate_rewards` is wrapped only to keep the rewards
for the rollout log.

Mask sources (`mask_source`): the names of `hicra.algorithms.MASK_SOURCES` ("planning", "high-entropy",
"placebo", "placebo-mass", "planning+entropy", "gated"; "sg" and "sg+entropy" are aliases), computed by
`hicra.algorithms.amplification_mask` over this process's generation batch; groups are the `num_generations`
consecutive completions of one prompt.
Entropies and behaviour log-probs (for the entropy sources, placebo-mass and the rollout log) need one extra
no-grad forward pass of the policy over the completions; it runs only when a mask source or the rollout log
needs it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from hicra.algorithms import (
    ENTROPY_MASK_SOURCES,
    HIGH_ENTROPY_QUANTILE,
    LOGPROB_MASK_SOURCES,
    MASK_SOURCES,  # noqa: F401  (re-exported: hicra.integrations.trl.MASK_SOURCES)
    OPTION_RANGES,
    amplification_mask,
    canonical_mask_source,
    check_option,
    hicra_advantages,
)

# TRL loss types whose sequence-level importance ratio carries the gradient: each token's gradient is the response's
# mean advantage times the ratio's, whatever the token's own advantage (cispo and vespo detach their ratio)
SEQUENCE_SPREAD = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "sapo")


@dataclass
class HICRAConfig(GRPOConfig):
    """`GRPOConfig` plus HICRA's switches. Project defaults where the paper is silent: no std division
    (`scale_rewards="none"`), clip-higher (`epsilon=0.2`, `epsilon_high=0.28`), token-mean loss (`loss_type="dapo"`),
    no KL (`beta=0`)."""

    alpha: float = field(default=0.2, metadata={"help": "HICRA amplification on planning tokens, 0 <= alpha < 1."})
    lexicon: str = field(default="paper", metadata={"help": "Lexicon preset name or path to a lexicon JSON."})
    mask_source: str = field(default="planning", metadata={
        "help": "planning | high-entropy | placebo | placebo-mass | planning+entropy | gated "
                "(hicra.algorithms.MASK_SOURCES)"})
    entropy_quantile: float = field(default=HIGH_ENTROPY_QUANTILE, metadata={
        "help": "Share of highest-entropy completion tokens for the high-entropy and planning+entropy sources."})
    placebo_rate: float | None = field(default=None, metadata={
        "help": "Share of random tokens for the placebo source; None = the batch's SG planning rate."})
    gated_planning: bool = field(default=False, metadata={
        "help": "gated: also amplify the planning tokens of every response of a touched group (off, as in the PR)."})
    log_rollouts: bool = field(default=True, metadata={
        "help": "Write rollout rows (run-directory schema) to run_dir/rollouts/ for `hicra analyze`."})
    log_token_stats: bool = field(default=True, metadata={
        "help": "Fill logprobs/entropies of rollout rows (one extra no-grad forward pass per generation)."})
    log_planning_mask: bool = field(default=True, metadata={"help": "Store the SG planning mask in rollout rows."})
    run_dir: str | None = field(default=None, metadata={"help": "Run directory; default: output_dir."})
    correct_threshold: float = field(default=1.0, metadata={
        "help": "A rollout counts as correct when its total reward is >= this value."})
    scale_rewards: str = field(default="none", metadata={"help": "TRL's switch: group | batch | none."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper clip (clip-higher)."})
    loss_type: str = field(default="dapo", metadata={"help": "TRL loss type; dapo is token-mean."})

    def __post_init__(self):
        super().__post_init__()
        for name in OPTION_RANGES:  # ValueError: "alpha must be in [0, 1), got 1.5"
            check_option(name, getattr(self, name))
        self.mask_source = canonical_mask_source(self.mask_source)  # ValueError naming MASK_SOURCES
        if self.alpha > 0 and self.importance_sampling_level == "sequence" and self.loss_type in SEQUENCE_SPREAD:
            raise ValueError(
                f"importance_sampling_level='sequence' with loss_type={self.loss_type!r} gives every token of a "
                "response the gradient of the response's mean advantage, so HICRA's amplification of planning "
                "tokens would be spread over the whole response: use importance_sampling_level='token' (or a loss "
                "whose ratio is detached: cispo, vespo)")


def gated_layout_problem(cfg: HICRAConfig, num_processes: int, num_generations: int, num_generations_eval: int,
                         evaluates: bool) -> str | None:
    """Why the `gated` source cannot run in this layout (one line), or None. Its rule compares a response with its
    whole group, and each process computes it on the completions it holds, so with several processes each must hold
    whole groups: a multiple of the completions per prompt (TRL allows any multiple of the global batch)."""
    if cfg.mask_source != "gated" or num_processes == 1:
        return None
    layouts = [("training", cfg.per_device_train_batch_size * cfg.steps_per_generation, num_generations,
                "per_device_train_batch_size x steps_per_generation")]
    if evaluates:
        layouts.append(("evaluation", cfg.per_device_eval_batch_size, num_generations_eval,
                        "per_device_eval_batch_size"))
    for mode, local, size, names in layouts:
        if local % size:
            return (f"mask source 'gated' needs each process to hold whole groups: in {mode} a process holds {local} "
                    f"completions ({names}), not a multiple of the {size} per prompt")
    return None


def _text(value: Any) -> str:
    """Plain text of a prompt/completion: strings as they are, chat messages joined by their contents."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return str(value)


def _prompt_id(row: dict, prompt_text: str) -> str:
    for key in ("prompt_id", "id"):
        if key in row and row[key] is not None:
            return str(row[key])
    return hashlib.sha1(prompt_text.encode("utf-8")).hexdigest()[:12]


class RolloutLogger(TrainerCallback):
    """Writes `run.json` at train start and the rollout rows the trainer queued, one Parquet part per step."""

    def __init__(self, run_dir: str | Path, run_info: dict):
        self.run_dir, self.run_info = Path(run_dir), run_info
        self.pending: list[tuple[int, list[dict]]] = []
        self._parts: Counter = Counter()
        self.process_index = 0

    def queue(self, step: int, rows: list[dict]) -> None:
        self.pending.append((step, rows))

    def flush(self) -> None:
        from hicra.dynamics.records import RolloutWriter

        writer = RolloutWriter(self.run_dir)
        for step, rows in self.pending:
            # one part per process and generation: part = generation index * 1000 + process index
            part = self._parts[step] * 1000 + self.process_index
            self._parts[step] += 1
            writer.write_step(step, rows, part=part)
        self.pending.clear()

    def on_train_begin(self, args, state, control, **kwargs):
        from hicra.dynamics.records import write_run_info

        if state.is_world_process_zero:
            write_run_info(self.run_dir, self.run_info)

    def on_step_end(self, args, state, control, **kwargs):
        self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()


class HICRATrainer(GRPOTrainer):
    """`GRPOTrainer` whose advantages are per-token HICRA advantages (see module doc). Takes a `HICRAConfig`."""

    def __init__(self, *args, annotate=None, **kwargs):
        """`annotate(row: dict, completion: str) -> dict` may return `correct`/`error_type` for rollout rows
        (e.g. a lab task checker); otherwise correct = total reward >= `correct_threshold`."""
        super().__init__(*args, **kwargs)
        cfg = self.args
        if not isinstance(cfg, HICRAConfig):
            raise TypeError("HICRATrainer needs a HICRAConfig")
        from hicra.planning import Lexicon, PlanningTagger

        problem = gated_layout_problem(cfg, self.accelerator.num_processes, self.num_generations,
                                       self.num_generations_eval, evaluates=self.eval_dataset is not None)
        if problem:
            raise ValueError(problem)
        self.lexicon = Lexicon.resolve(cfg.lexicon)
        self.tagger = PlanningTagger(self.lexicon, self.processing_class)
        self.annotate = annotate
        # one generator per mode, so evaluating (how often, whether at all) never changes the training masks
        self._mask_generators = {mode: torch.Generator().manual_seed(int(cfg.seed) + offset)
                                 for mode, offset in (("train", 0), ("eval", 1))}
        self._last_reward_call: dict | None = None
        self.last_hicra_batch: dict | None = None
        self.rollout_logger: RolloutLogger | None = None
        if cfg.log_rollouts:
            model_name = getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__
            info = {"algorithm": "hicra" if cfg.alpha > 0 else "grpo", "alpha": cfg.alpha, "seed": cfg.seed,
                    "model": model_name, "task": None, "lexicon": self.lexicon.name,
                    "config": {"backend": "trl", "mask_source": cfg.mask_source,
                               "entropy_quantile": cfg.entropy_quantile, "placebo_rate": cfg.placebo_rate,
                               "gated_planning": cfg.gated_planning,
                               "num_generations": cfg.num_generations, "learning_rate": cfg.learning_rate,
                               "scale_rewards": cfg.scale_rewards, "loss_type": cfg.loss_type,
                               "epsilon": cfg.epsilon, "epsilon_high": cfg.epsilon_high, "beta": cfg.beta,
                               "max_completion_length": cfg.max_completion_length,
                               "temperature": cfg.temperature}}
            self.rollout_logger = RolloutLogger(cfg.run_dir or cfg.output_dir, info)
            self.rollout_logger.process_index = self.accelerator.process_index
            self.add_callback(self.rollout_logger)

    # -- the override point -------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_reward_call = {"inputs": inputs, "prompts": prompts, "completions": completions,
                                  "rewards_per_func": rewards_per_func}
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        cfg, mode = self.args, "train" if self.model.training else "eval"
        ids, cmask = out["completion_ids"], out["completion_mask"].bool()
        # the tokens TRL trains on: with tool calls or an environment, `tool_mask` leaves out the tokens the tool
        # wrote, so no mask source may tag, draw or count them
        trained = cmask & out["tool_mask"].bool() if out.get("tool_mask") is not None else cmask
        # entropies cost one extra no-grad forward pass
        want_stats = canonical_mask_source(cfg.mask_source) in (*ENTROPY_MASK_SOURCES, *LOGPROB_MASK_SOURCES) or (
            mode == "train" and cfg.log_rollouts and cfg.log_token_stats)
        logps = entropies = None
        if want_stats:
            logps, entropies = self._token_stats(out)
        sampled = self._sampled_mask(ids, cmask)  # with mask_truncated_completions, more than cmask
        sg_sampled = self.tagger.padded_masks(ids, sampled)
        sg_mask = sg_sampled & trained
        base = out["advantages"]
        mask = self._planning_mask(sg_mask, trained, entropies, base, logps, mode)
        amplified = hicra_advantages(base, mask, cfg.alpha)
        # alpha = 0 keeps TRL's [B] advantages: [B, T] ones would train the same, but some of TRL's logged
        # statistics (clip ratios under sequence-level ratios, VESPO's weights) average [B, T] flags per token
        if cfg.alpha > 0:
            out["advantages"] = amplified
        # for inspection and tests: "planning_mask" is the amplified mask (of any source), "sg_mask" the tagged one
        self.last_hicra_batch = {"base_advantages": base, "planning_mask": mask, "sg_mask": sg_mask}
        self._log_hicra_metrics(mode, amplified, mask, sg_mask, trained, ids, sampled)
        if self._last_reward_call is not None:  # TRL's rewards, gathered over processes: the whole generation batch
            unscored = torch.isnan(self._last_reward_call["rewards_per_func"]).all(dim=1).sum()
            self._metrics[mode]["hicra/unscored_completions"].append(float(unscored))
        if mode == "train" and self.rollout_logger is not None and self._last_reward_call is not None:
            self.rollout_logger.queue(int(self.state.global_step),
                                      self._rollout_rows(out, sg_sampled, logps, entropies))
        return out

    def get_gamma_weights(self, advantages, *args, **kwargs):
        """TRL's VESPO weights, one per response ([B, 1]) as TRL computes and logs them: they depend on the sign of
        the response's advantage, which HICRA's per-token advantages keep (A + alpha|A| m, alpha < 1), so the first
        column stands for the row."""
        if advantages.dim() == 2 and advantages.size(1) > 1:
            advantages = advantages[:, :1]
        return super().get_gamma_weights(advantages, *args, **kwargs)

    # -- masks ------------------------------------------------------------------------------------------------

    def _planning_mask(self, sg_mask, cmask, entropies, advantages=None, logprobs=None,
                       mode: str = "train") -> torch.Tensor:
        """The amplification mask of this process's batch (`hicra.algorithms.amplification_mask`); groups are the
        completions of one prompt, `num_generations` of them in training and `num_generations_eval` in evaluation
        (as TRL groups them for the advantages)."""
        cfg = self.args
        start = self.accelerator.process_index * cmask.size(0)
        size = self.num_generations if mode == "train" else self.num_generations_eval
        groups = (start + torch.arange(cmask.size(0))) // size
        return amplification_mask(
            cfg.mask_source, cmask, planning_mask=sg_mask, entropies=entropies, advantages=advantages,
            group_ids=groups, entropy_quantile=cfg.entropy_quantile, placebo_rate=cfg.placebo_rate,
            generator=self._mask_generators[mode], gated_planning=cfg.gated_planning, logprobs=logprobs)

    @torch.no_grad()
    def _token_stats(self, out: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Behaviour log-probs and entropies of the completion tokens under the current policy (no grad)."""
        input_ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        sampled = self._sampled_mask(out["completion_ids"], out["completion_mask"].bool())
        attention = torch.cat([out["prompt_mask"], sampled.to(out["prompt_mask"].dtype)], dim=1)
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            self.model, input_ids, attention, out["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size, compute_entropy=True)
        return logps.float(), entropies.float()

    # -- logging ----------------------------------------------------------------------------------------------

    def _log_hicra_metrics(self, mode, adv, mask, sg_mask, trained, ids, sampled) -> None:
        """hicra/* metrics over the whole generation batch (summed across processes before dividing), named as
        the verl integration names them: `planning_ratio` is the share of trained tokens that are planning (SG)
        tokens, `amplified_ratio` the share the mask source amplified (the same for the `planning` source);
        `adv_planning_mean` / `adv_execution_mean` average the advantages over planning / other trained tokens."""
        from accelerate.utils import gather_object

        from hicra.planning.metrics import phrase_counts, semantic_entropy

        plan, exe = sg_mask & trained, trained & ~sg_mask
        local = torch.stack([plan.sum(), trained.sum(), (adv * plan).sum(), exe.sum(), (adv * exe).sum(),
                             (mask & trained).sum()]).float()
        n_plan, n_resp, sum_plan, n_exe, sum_exe, n_amp = self.accelerator.gather(local).view(-1, 6).sum(0).tolist()
        m = self._metrics[mode]
        m["hicra/planning_ratio"].append(n_plan / max(1.0, n_resp))
        m["hicra/amplified_ratio"].append(n_amp / max(1.0, n_resp))
        # means over an empty token set are left out rather than logged as a misleading 0
        if n_plan > 0:
            m["hicra/adv_planning_mean"].append(sum_plan / n_plan)
        if n_exe > 0:
            m["hicra/adv_execution_mean"].append(sum_exe / n_exe)
        texts = self.processing_class.batch_decode(
            [row[: int(n)] for row, n in zip(ids.tolist(), sampled.sum(-1).tolist(), strict=True)],
            skip_special_tokens=True)
        counts = Counter()
        for c in gather_object([phrase_counts(texts, self.tagger)]):  # strategic grams, whatever the mask source
            counts.update(c)
        m["hicra/semantic_entropy"].append(float(semantic_entropy(counts)) if counts else 0.0)

    def _sampled_mask(self, ids: torch.Tensor, cmask: torch.Tensor) -> torch.Tensor:
        """[B, T] the sampled tokens of each completion (up to and including its first EOS), whatever the loss mask.

        TRL's `completion_mask` is that, except with `mask_truncated_completions=True`, where it is all zeros for a
        truncated completion (no EOS): such a row's tokens are its ids up to the first padding id. The loss mask
        only affects the loss; rollout rows keep every sampled token."""
        keep = cmask.clone()
        dropped = ~cmask.any(dim=1)
        if bool(dropped.any()):
            stop = set(self.eos_token_ids) | {getattr(self, "_tokenizer", self.processing_class).pad_token_id}
            is_stop = torch.isin(ids, torch.tensor(sorted(t for t in stop if t is not None), device=ids.device))
            positions = torch.arange(ids.size(1), device=ids.device).expand_as(ids)
            first = torch.where(is_stop, positions, ids.size(1)).amin(dim=1, keepdim=True)
            keep = torch.where(dropped.unsqueeze(1), positions < first, keep)
        return keep

    def _rollout_rows(self, out, sg_mask, logps, entropies) -> list[dict]:
        from hicra.dynamics.records import rollout_row

        call = self._last_reward_call
        cfg = self.args
        ids = out["completion_ids"]
        cmask = self._sampled_mask(ids, out["completion_mask"].bool())
        n_local = ids.size(0)
        start = self.accelerator.process_index * n_local
        rewards_all = (call["rewards_per_func"] * self.reward_weights.to(call["rewards_per_func"].device)
                       .unsqueeze(0)).nansum(dim=1)
        rewards = rewards_all[start:start + n_local].tolist()
        # a completion every reward function returned None for: TRL leaves it out of its reward statistics; its row
        # is left out too (a row's reward must be a number); hicra/unscored_completions counts them
        unscored = torch.isnan(call["rewards_per_func"][start:start + n_local]).all(dim=1).tolist()
        eos = set(self.eos_token_ids)
        rows = []
        for i in range(n_local):
            if unscored[i]:
                continue
            n = int(cmask[i].sum())
            tok = ids[i, :n].tolist()
            prompt_text = _text(call["prompts"][i])
            completion = _text(call["completions"][i])
            reward = float(rewards[i])
            row = rollout_row(
                prompt_id=_prompt_id(call["inputs"][i], prompt_text),
                sample_idx=(start + i) % self.num_generations, prompt=prompt_text,
                response=completion, token_ids=tok,
                logprobs=logps[i, :n] if logps is not None else None,
                entropies=entropies[i, :n] if entropies is not None else None,
                planning_mask=sg_mask[i, :n] if cfg.log_planning_mask else None,
                reward=reward, correct=reward >= cfg.correct_threshold,
                truncated=not (tok and tok[-1] in eos), error_type=None,
            )
            if self.annotate is not None:
                row.update({k: v for k, v in self.annotate(call["inputs"][i], completion).items()
                            if k in ("correct", "error_type")})
            rows.append(row)
        return rows
