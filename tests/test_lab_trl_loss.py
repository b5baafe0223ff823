"""For one identical batch, TRL's GRPOTrainer loss path and hicra.algorithms.policy_loss agree (within 1e-5).

The batch (prompt ids, completions, behaviour log-probs, advantages) is fed to TRL's own `_compute_loss`, which
recomputes the current log-probs with the model; the same log-probs go into `policy_loss`. Old log-probs differ
from the current ones so that both clip sides are exercised. TRL's loss types map onto hicra's aggregations:
bnpo = token-mean, grpo = seq-mean-token-mean, dr_grpo = seq-mean-token-sum-norm (horizon max_completion_length).
"""

from __future__ import annotations

import pytest
import torch

from hicra.algorithms import policy_loss
from hicra.lab.model import build_model, train_tokenizer
from hicra.lab.sampling import sequence_logprobs

# one worker under pytest-xdist (make test: --dist loadgroup) so the module fixture is built once
pytestmark = pytest.mark.xdist_group("lab_trl")

T = 12  # max completion length


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = train_tokenizer([f"reach {i} using 1 2 3\nlet's try 1+2=3\n3*3=9\n" for i in range(60)],
                          vocab_size=280)
    model = build_model(tok, size="1m", seed=0)
    torch.manual_seed(0)
    B, P = 6, 5
    prompt_ids = torch.randint(2, len(tok), (B, P))
    prompt_mask = torch.ones((B, P), dtype=torch.long)  # equal-length prompts: no left padding
    completion_ids = torch.randint(2, len(tok), (B, T))
    lengths = torch.tensor([12, 7, 3, 12, 9, 1])
    completion_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    advantages = torch.tensor([0.5, -0.5, 1.0, -1.0, 0.25, -0.25])
    return tok, model, prompt_ids, prompt_mask, completion_ids, completion_mask, advantages


def _trainer(tok, model, tmp_path, loss_type):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=6,
                      num_generations=3, max_completion_length=T, epsilon=0.2, epsilon_high=0.28, beta=0.0,
                      loss_type=loss_type, report_to=[], save_strategy="no", logging_strategy="no")
    ds = Dataset.from_list([{"prompt": "reach 6 using 1 2 3\n"}] * 6)
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
                          train_dataset=ds, processing_class=tok)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@pytest.mark.parametrize(("loss_type", "aggregation"),
                         [("bnpo", "token-mean"), ("grpo", "seq-mean-token-mean"),
                          ("dr_grpo", "seq-mean-token-sum-norm")])
def test_trl_and_hicra_policy_loss_agree(setup, tmp_path, loss_type, aggregation):
    tok, model, prompt_ids, prompt_mask, completion_ids, completion_mask, advantages = setup
    trainer = _trainer(tok, model, tmp_path, loss_type)
    model = trainer.model
    model.train()
    with torch.no_grad():
        current = sequence_logprobs(model, prompt_ids, prompt_mask.bool(), completion_ids, completion_mask.bool())
    # behaviour log-probs: the current ones shifted by +-0.4 on alternating tokens (ratios e^0.4, e^-0.4)
    shift = 0.4 * torch.where(torch.arange(T) % 2 == 0, 1.0, -1.0)
    old = (current + shift).detach()
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
              "completion_mask": completion_mask, "advantages": advantages, "old_per_token_logps": old,
              "num_items_in_batch": completion_mask.sum()}

    model.zero_grad()
    trl_loss = trainer._compute_loss(model, inputs)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    logp = sequence_logprobs(model, prompt_ids, prompt_mask.bool(), completion_ids, completion_mask.bool())
    ours, stats = policy_loss(logp, old, advantages, completion_mask.bool(), clip_low=0.2, clip_high=0.28,
                              aggregation=aggregation, max_response_length=T)
    ours.backward()
    assert stats["clip_frac_low"] > 0 and stats["clip_frac_high"] > 0  # both clip sides exercised
    assert abs(ours.item() - trl_loss.item()) < 1e-5
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, trl_grads[n], atol=1e-5, rtol=1e-4)
