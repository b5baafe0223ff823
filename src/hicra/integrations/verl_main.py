"""verl entry point with HICRA: `python -m hicra.integrations.verl_main [verl overrides] +hicra.alpha=0.2 ...`.

The same Hydra config as `python -m verl.trainer.main_ppo` (verl's `ppo_trainer.yaml`), plus a `hicra` block:

    algorithm.adv_estimator=hicra           select the estimator (registered on import of hicra.integrations.verl)
    trainer.use_v1=False                    the trainer path whose fit() hands compute_advantage the full batch
    +hicra.alpha=0.2  +hicra.lexicon=paper  +hicra.mask_source=sg  +hicra.run_dir=runs/x  +hicra.seed=0

verl runs its driver loop inside a Ray actor (the TaskRunner), so the plumbing is installed there: the TaskRunner
subclass below builds `HICRAPlumbing` from the config and the policy's tokenizer, installs it, then runs verl's
own training code unchanged. See docs/scale.md for a multi-node recipe.
"""

from __future__ import annotations

from pathlib import Path


def plumbing_from_config(config):
    """`HICRAPlumbing` from a verl config's `hicra` block and its actor model's tokenizer."""
    from transformers import AutoTokenizer

    from hicra.integrations.verl import HICRAPlumbing

    opts = dict(config.get("hicra", {}) or {})
    model = config.actor_rollout_ref.model
    tokenizer = AutoTokenizer.from_pretrained(str(model.path),
                                              trust_remote_code=bool(model.get("trust_remote_code", False)))
    info = {"model": str(model.path), "task": str(config.data.get("train_files")),
            "config": {"backend": "verl", "mask_source": opts.get("mask_source", "sg"),
                       "rollout_n": int(config.actor_rollout_ref.rollout.n),
                       "norm_adv_by_std_in_grpo": bool(config.algorithm.get("norm_adv_by_std_in_grpo", True))}}
    return HICRAPlumbing(tokenizer, lexicon=opts.get("lexicon", "paper"), alpha=float(opts.get("alpha", 0.2)),
                         mask_source=opts.get("mask_source", "sg"), placebo_rate=opts.get("placebo_rate"),
                         run_dir=opts.get("run_dir"), correct_threshold=float(opts.get("correct_threshold", 1.0)),
                         seed=int(opts.get("seed", 0)), run_info=info)


def task_runner_class():
    """A Ray actor class: verl's legacy TaskRunner that installs the HICRA plumbing before training."""
    import ray
    from verl.trainer.main_ppo_v0 import TaskRunner

    base = TaskRunner.__ray_metadata__.modified_class  # the plain class behind verl's @ray.remote

    class HICRATaskRunner(base):
        def run(self, config):
            import hicra.integrations.verl  # noqa: F401  (registers the estimator in this process)

            plumbing_from_config(config).install()
            return super().run(config)

    return ray.remote(HICRATaskRunner)


def _config_dir() -> str:
    import verl

    return str(Path(verl.__file__).parent / "trainer" / "config")


def main() -> None:
    import hydra

    @hydra.main(config_path=_config_dir(), config_name="ppo_trainer", version_base=None)
    def _run(config):
        from verl.trainer.main_ppo import run_ppo

        import hicra.integrations.verl  # noqa: F401

        if config.trainer.get("use_v1", False):
            raise SystemExit("hicra verl_main: set trainer.use_v1=False (the trainer that passes token ids to "
                             "compute_advantage); see docs/scale.md")
        run_ppo(config, task_runner_class=task_runner_class())

    _run()


if __name__ == "__main__":
    main()
