"""verl entry point with HICRA: `python -m hicra.integrations.verl_main [verl overrides] +hicra.alpha=0.2 ...`.

The same Hydra config as `python -m verl.trainer.main_ppo` (verl's `ppo_trainer.yaml`), plus a `hicra` block:

    +hicra.alpha=0.2  +hicra.lexicon=paper  +hicra.mask_source=planning  +hicra.seed=0
    +hicra.entropy_quantile=0.2  +hicra.placebo_rate=null  +hicra.gated_planning=false  +hicra.run_dir=runs/x

Two ways in, chosen by `algorithm.adv_estimator`:

* any verl estimator (`grpo` for HICRA): amplification in the actor's loss (`hicra.integrations.verl.HICRALoss`),
  on verl's default v1 trainer (`trainer.use_v1=True`) and on the legacy one; every mask source. The actor worker
  class is replaced by `hicra_worker_class(...)` inside verl's Ray TaskRunner, then verl's own code runs unchanged.
* `algorithm.adv_estimator=hicra` (legacy trainer only, `trainer.use_v1=False`): the `hicra` estimator with the
  planning-mask plumbing on the driver (mask sources planning and placebo), which also writes rollout rows to
  `+hicra.run_dir` for `hicra analyze`.

See docs/scale.md for a multi-node recipe.
"""

from __future__ import annotations

import sys
from pathlib import Path

# keys of the `hicra` block passed to HICRALoss (the actor-loss path)
LOSS_OPTIONS = ("lexicon", "alpha", "mask_source", "entropy_quantile", "placebo_rate", "gated_planning", "seed")


def hicra_options(config) -> dict:
    """HICRALoss keyword arguments from a verl config's `hicra` block (absent keys keep HICRALoss's defaults)."""
    opts = dict(config.get("hicra", {}) or {})
    unknown = sorted(set(opts) - set(LOSS_OPTIONS) - {"run_dir", "correct_threshold"})
    if unknown:
        raise ValueError(f"unknown +hicra option(s) {unknown}; known: {', '.join(LOSS_OPTIONS)}, run_dir, "
                         "correct_threshold")
    # a null option is an unset one (HICRALoss's default), as `_range_problem` reads it; alpha must be a number
    out = {k: opts[k] for k in LOSS_OPTIONS if k in opts and (opts[k] is not None or k == "alpha")}
    if "alpha" in out:
        from hicra.algorithms import option_problem

        problem = option_problem("alpha", out["alpha"])
        if problem:
            raise ValueError(f"+hicra.{problem}")
        out["alpha"] = float(out["alpha"])
    return out


def loss_options(config) -> dict:
    """`hicra_options(config)` plus the group size (rollout.n), with which `HICRALoss` reports the groups the gated
    source sees in part."""
    n = ((config.get("actor_rollout_ref") or {}).get("rollout") or {}).get("n")
    return hicra_options(config) | ({"group_size": int(n)} if n is not None else {})


def _range_problem(opts: dict) -> str | None:
    """The first `+hicra` value out of its range (`hicra.algorithms.OPTION_RANGES`), or None."""
    from hicra.algorithms import OPTION_RANGES, option_problem

    for key in OPTION_RANGES:
        if opts.get(key) is not None and (problem := option_problem(key, opts[key])):  # unset: HICRALoss's default
            return f"+hicra.{problem}"
    return None


def config_problem(config) -> str | None:
    """What is wrong with a verl config for HICRA (one line), or None: unknown `+hicra` keys, values out of range,
    a lexicon that does not load, a mask source the chosen path cannot compute or settings it would ignore, and
    trainer combinations that cannot work. Checked on the driver, so nothing fails later inside Ray workers."""
    from hicra.algorithms import ENTROPY_MASK_SOURCES, canonical_mask_source
    from hicra.planning import Lexicon

    try:
        opts = hicra_options(config)
        source = canonical_mask_source(opts.get("mask_source", "planning"))
    except ValueError as exc:
        return str(exc)
    problem = _range_problem(opts)
    if problem:
        return problem
    try:
        Lexicon.resolve(str(opts.get("lexicon", "paper")))
    except (ValueError, OSError) as exc:
        return f"+hicra.lexicon: {exc}"
    v1 = bool(config.trainer.get("use_v1", False))
    actor = config.actor_rollout_ref.actor
    rollout_n = ((config.actor_rollout_ref.get("rollout") or {}).get("n"))
    alpha = opts.get("alpha", 0.2)  # HICRALoss's and HICRAPlumbing's default
    if alpha > 0 and _loss_mode(config) == "geo_mean":
        return ("actor_rollout_ref.actor.policy_loss.loss_mode=geo_mean (GMPO) averages each response's advantages "
                "into one value, so the amplification of planning tokens would be spread over the whole response: "
                "use another loss mode")
    if uses_estimator(config):
        if rollout_n is not None and int(rollout_n) < 2:
            return (f"algorithm.adv_estimator=hicra needs groups: actor_rollout_ref.rollout.n >= 2, got {rollout_n} "
                    "(a one-response group has advantage 0, so nothing would be trained)")
        if v1:
            return ("algorithm.adv_estimator=hicra needs trainer.use_v1=False; on the default v1 trainer use "
                    "algorithm.adv_estimator=grpo (HICRA then amplifies in the actor loss)")
        if source not in ("planning", "placebo"):
            return (f"+hicra.mask_source={source} needs the actor-loss path (algorithm.adv_estimator=grpo); the "
                    "hicra estimator takes planning or placebo")
        ignored = sorted(k for k in ("entropy_quantile", "gated_planning") if k in opts)
        if ignored:
            return (f"+hicra.{ignored[0]} is not used by the hicra estimator (mask sources planning and placebo); "
                    "drop it, or use the actor-loss path (algorithm.adv_estimator=grpo)")
        return None
    if (config.get("hicra", {}) or {}).get("run_dir") is not None:
        return ("+hicra.run_dir (rollout rows) needs the legacy estimator: trainer.use_v1=False "
                "algorithm.adv_estimator=hicra")
    if v1 and str((config.trainer.get("v1") or {}).get("trainer_mode", "sync")) == "separate_async":
        return ("trainer.v1.trainer_mode=separate_async puts verl's own actor worker (DetachActorWorker) in place of "
                "HICRA's, so the run would train without HICRA: use sync or colocate_async")
    bypass = bool(((config.get("algorithm") or {}).get("rollout_correction") or {}).get("bypass_mode", False))
    if ((not v1 or bypass) and source in ENTROPY_MASK_SOURCES and not actor.get("calculate_entropy")
            and not actor.get("entropy_coeff", 0)):
        where = "the legacy trainer" if not v1 else "the v1 trainer in rollout_correction.bypass_mode"
        return (f"mask source {source!r} on {where} needs per-token entropies (the batch keeps no old-policy "
                "entropies there): set actor_rollout_ref.actor.calculate_entropy=True")
    problem = _distillation_problem(config)
    if problem:
        return problem
    if source == "gated":
        return _gated_problem(config, v1, rollout_n)
    return None


def _loss_mode(config) -> str:
    """The actor's policy loss (`actor_rollout_ref.actor.policy_loss.loss_mode`, verl's default "vanilla")."""
    return str((config.actor_rollout_ref.actor.get("policy_loss") or {}).get("loss_mode", "vanilla"))


def _distillation_problem(config) -> str | None:
    """A top-k distillation loss calls the actor's loss as a logits processor, a call HICRALoss does not take."""
    dist = config.get("distillation") or {}
    mode = (dist.get("distillation_loss") or {}).get("loss_mode")
    if not dist.get("enabled") or mode is None:
        return None
    from verl.trainer.distillation.losses import get_distillation_loss_settings

    try:
        topk = get_distillation_loss_settings(str(mode)).use_topk
    except ValueError:
        return None  # verl names an unknown loss mode itself
    if topk:
        return (f"distillation.distillation_loss.loss_mode={mode} (a top-k loss) calls the actor's loss as a logits "
                "processor, which HICRA's loss is not: use an estimator distillation loss, or train without HICRA")
    return None


def _gated_problem(config, v1: bool, rollout_n) -> str | None:
    """The gated rule compares each response with its group, so each micro-batch must hold whole groups: what in
    the config splits them. (HICRALoss also reports, per micro-batch, the share of groups it holds in part.)"""
    actor = config.actor_rollout_ref.actor
    if not v1 and bool(config.trainer.get("balance_batch", True)):
        return ("mask source 'gated' needs whole groups in each micro-batch, and trainer.balance_batch=True "
                "reorders the batch across data-parallel ranks: set trainer.balance_batch=False")
    if actor.get("use_dynamic_bsz"):
        return ("mask source 'gated' needs whole groups in each micro-batch, and "
                "actor_rollout_ref.actor.use_dynamic_bsz=True packs micro-batches by tokens: set it to False")
    if actor.get("shuffle"):
        return ("mask source 'gated' needs whole groups in each micro-batch, and actor_rollout_ref.actor.shuffle=True "
                "shuffles responses across them: set it to False")
    micro = actor.get("ppo_micro_batch_size_per_gpu")
    if micro is not None and rollout_n is not None and int(micro) % int(rollout_n):
        return (f"mask source 'gated' needs whole groups in each micro-batch: "
                f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu ({micro}) must be a multiple of "
                f"actor_rollout_ref.rollout.n ({rollout_n})")
    return None


def config_notes(config) -> list[str]:
    """What a verl config does with HICRA that a user may not expect (printed, not refused): one line each."""
    notes = []
    estimator = str(config.algorithm.get("adv_estimator", "gae"))
    if estimator == "gae":
        notes.append("algorithm.adv_estimator=gae (verl's default): HICRA amplifies GAE's per-token advantages and "
                     "the run trains a critic; the paper's setting is algorithm.adv_estimator=grpo")
    mode = _loss_mode(config)
    if mode in ("clip_cov", "kl_cov"):
        notes.append(f"policy_loss.loss_mode={mode} picks the tokens it clips or penalises from the advantages, so "
                     "HICRA's amplification changes which tokens those are")
    return notes


def uses_estimator(config) -> bool:
    """True when the run uses the legacy `hicra` estimator (and its plumbing) instead of the actor loss."""
    return str(config.algorithm.get("adv_estimator", "gae")) == "hicra"


def plumbing_from_config(config):
    """`HICRAPlumbing` from a verl config's `hicra` block and its actor model's tokenizer."""
    from transformers import AutoTokenizer

    from hicra.integrations.verl import HICRAPlumbing

    opts = dict(config.get("hicra", {}) or {})
    model = config.actor_rollout_ref.model
    tokenizer = AutoTokenizer.from_pretrained(str(model.path),
                                              trust_remote_code=bool(model.get("trust_remote_code", False)))
    info = {"model": str(model.path), "task": str(config.data.get("train_files")),
            "config": {"backend": "verl", "mask_source": opts.get("mask_source", "planning"),
                       "rollout_n": int(config.actor_rollout_ref.rollout.n),
                       "norm_adv_by_std_in_grpo": bool(config.algorithm.get("norm_adv_by_std_in_grpo", True))}}
    return HICRAPlumbing(tokenizer, lexicon=opts.get("lexicon", "paper"), alpha=float(opts.get("alpha", 0.2)),
                         mask_source=opts.get("mask_source", "planning"), placebo_rate=opts.get("placebo_rate"),
                         run_dir=opts.get("run_dir"), correct_threshold=float(opts.get("correct_threshold", 1.0)),
                         seed=int(opts.get("seed", 0)), run_info=info)


def task_runner_class():
    """A Ray actor class: verl's legacy TaskRunner (trainer.use_v1=False) with HICRA: the estimator plumbing when
    `algorithm.adv_estimator=hicra`, else the HICRA actor loss."""
    import ray
    from verl.trainer.main_ppo_v0 import TaskRunner

    base = TaskRunner.__ray_metadata__.modified_class  # the plain class behind verl's @ray.remote

    class HICRATaskRunner(base):
        def add_actor_rollout_worker(self, config):
            cls, group_cls = super().add_actor_rollout_worker(config)
            if uses_estimator(config):
                return cls, group_cls
            from verl.trainer.ppo.ray_trainer import Role

            from hicra.integrations.verl import hicra_worker_class

            worker = hicra_worker_class(loss_options(config))
            for role in (Role.ActorRollout, Role.ActorRolloutRef):
                if role in self.role_worker_mapping:
                    self.role_worker_mapping[role] = ray.remote(worker)
            return worker, group_cls

        def run(self, config):
            import hicra.integrations.verl  # noqa: F401  (registers the estimator in this process)

            if uses_estimator(config):
                plumbing_from_config(config).install()
            return super().run(config)

    return ray.remote(HICRATaskRunner)


def task_runner_class_v1():
    """A Ray actor class: verl's v1 TaskRunner (the default trainer) whose actor worker uses the HICRA loss."""
    import ray
    from verl.trainer.main_ppo import TaskRunnerV1

    base = TaskRunnerV1.__ray_metadata__.modified_class

    class HICRATaskRunnerV1(base):
        def run(self, config):
            install_v1_worker(config)
            return super().run(config)

    return ray.remote(HICRATaskRunnerV1)


def install_v1_worker(config, module=None):
    """Point the v1 trainer's actor worker class (`trainer_base.ActorRolloutRefWorker`, which its resource-pool
    setup wraps in `ray.remote`) at `hicra_worker_class(loss_options(config))`. Returns the class."""
    from hicra.integrations.verl import hicra_worker_class

    if module is None:
        import verl.trainer.ppo.v1.trainer_base as module
    worker = hicra_worker_class(loss_options(config))
    module.ActorRolloutRefWorker = worker
    return worker


def _config_dir() -> str:
    import verl

    return str(Path(verl.__file__).parent / "trainer" / "config")


def main() -> None:
    import hydra

    @hydra.main(config_path=_config_dir(), config_name="ppo_trainer", version_base=None)
    def _run(config):
        from verl.trainer.main_ppo import run_ppo

        import hicra.integrations.verl  # noqa: F401

        problem = config_problem(config)  # bad settings fail here, not inside Ray
        if problem:
            print(f"hicra verl_main: error: {problem}; see docs/scale.md", file=sys.stderr)
            sys.exit(2)
        for note in config_notes(config):
            print(f"hicra verl_main: note: {note}", file=sys.stderr)
        v1 = bool(config.trainer.get("use_v1", False))
        run_ppo(config, task_runner_class=task_runner_class_v1() if v1 else task_runner_class())

    _run()


if __name__ == "__main__":
    main()
