#!/usr/bin/env bash
# HICRA with verl 0.9.1 on a Ray cluster: Qwen2.5-7B, vLLM rollouts, FSDP actor. Documented, NOT run in CI.
#
# Cluster: NNODES nodes x 8 GPUs (the paper used 2-4 nodes of 8xA100). On every node:
#   pip install -e ".[verl,eval]" vllm        (the versions verl 0.9.1 pins for vLLM)
# Head node:    ray start --head --port=6379
# Other nodes:  ray start --address=$HEAD_IP:6379
# Then run this script on the head node. Data: verl's parquet format (prompt as chat messages, reward_model.ground_truth),
# e.g. from verl's examples/data_preprocess/{gsm8k,math_dataset}.py or DAPO-Math-17k.
#
# What is HICRA-specific: the +hicra.* block. hicra.integrations.verl_main replaces the actor worker's loss with
# HICRA's (verl's ppo_loss on amplified advantages), on verl's default v1 trainer and on the legacy one
# (trainer.use_v1=False); the advantage estimator stays verl's own grpo.
# Controls: +hicra.mask_source=placebo | high-entropy | planning+entropy | gated [+hicra.gated_planning=true];
# baseline: +hicra.alpha=0. Rollout rows for `hicra analyze` come from the legacy path only:
#   trainer.use_v1=False algorithm.adv_estimator=hicra +hicra.run_dir=$RUN_DIR   (mask sources planning, placebo)
set -euo pipefail

NNODES=${NNODES:-2}
MODEL=${MODEL:-Qwen/Qwen2.5-7B}                       # or a local directory
DATA=${DATA:-$HOME/data/dapo-math}                    # train.parquet, val.parquet

python -m hicra.integrations.verl_main \
  algorithm.adv_estimator=grpo \
  algorithm.norm_adv_by_std_in_grpo=False \
  algorithm.use_kl_in_reward=False \
  data.train_files="$DATA/train.parquet" \
  data.val_files="$DATA/val.parquet" \
  data.train_batch_size=512 \
  data.max_prompt_length=1024 \
  data.max_response_length=8192 \
  data.filter_overlong_prompts=True \
  actor_rollout_ref.model.path="$MODEL" \
  actor_rollout_ref.model.use_remove_padding=True \
  actor_rollout_ref.model.enable_gradient_checkpointing=True \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size=128 \
  actor_rollout_ref.actor.use_dynamic_bsz=True \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576 \
  actor_rollout_ref.actor.use_kl_loss=False \
  actor_rollout_ref.actor.clip_ratio_low=0.2 \
  actor_rollout_ref.actor.clip_ratio_high=0.28 \
  actor_rollout_ref.actor.loss_agg_mode=token-mean \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.rollout.temperature=1.0 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
  trainer.nnodes="$NNODES" \
  trainer.n_gpus_per_node=8 \
  trainer.total_training_steps=500 \
  trainer.save_freq=50 \
  trainer.test_freq=25 \
  trainer.logger='["console"]' \
  trainer.project_name=hicra \
  trainer.experiment_name=qwen2.5-7b-hicra \
  +hicra.alpha=0.2 \
  +hicra.lexicon=paper \
  +hicra.mask_source=planning \
  +hicra.seed=0 \
  "$@"
