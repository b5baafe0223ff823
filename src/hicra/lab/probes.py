"""Skill probes: execution and planning measured apart, on held-out problems.

- Execution probe: teacher-force the noise-free trace of the cheapest strategy (an oracle plan) up to each `=`,
  let the model write the result greedily, and score it: `exec_probe_line_accuracy` is the share of lines whose
  written result is right. Planning is given, so only execution is measured.
- Planning probe: the model writes its own response greedily, but a calculator fills in the result after every
  `X op Y=` it writes (then a newline), so execution cannot fail: `plan_probe_solved` is the share of problems
  solved, `plan_probe_cheapest` the share solved with the cheapest strategy.

Both decode greedily, so a probe is a deterministic function of the weights.
"""

from __future__ import annotations

import random
import re

import torch

_OPEN_LINE = re.compile(r"(\d+)([-+*/])(\d+)=$")
_RESULT = re.compile(r"-?\d+")


def _greedy_forced(model, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int, tokenizer,
                   calculator: bool) -> list[list[int]]:
    """Greedy decoding, full recompute per token (tiny models, short texts); with `calculator`, the tokens of the
    true result and a newline are forced after every open computation line `X op Y=`."""
    from hicra.lab.sampling import left_pad, positions
    from hicra.lab.tasks.base import apply_op

    rows = [list(p) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    forced: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    newline = tokenizer("\n")["input_ids"]
    for _ in range(max_new_tokens):
        active = [i for i, d in enumerate(done) if not d]
        if not active:
            break
        ids, mask = left_pad([rows[i] for i in active], pad_id)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions(mask),
                           use_cache=False).logits[:, -1, :]
        best = logits.argmax(-1).tolist()
        for j, i in enumerate(active):
            tok = forced[i].pop(0) if forced[i] else best[j]
            rows[i].append(tok)
            out[i].append(tok)
            if tok == eos_id:
                done[i] = True
                continue
            if calculator and not forced[i]:
                tail = tokenizer.decode(out[i][-24:], skip_special_tokens=True).rsplit("\n", 1)[-1]
                m = _OPEN_LINE.search(tail)
                if m:
                    value = apply_op(int(m.group(1)), m.group(2), int(m.group(3)))
                    if value is not None and value.denominator == 1:
                        forced[i] = tokenizer(str(int(value)))["input_ids"] + newline
    return out


def execution_probe(model, tokenizer, task, problems, seed: int = 0) -> float:
    """Share of oracle-plan lines whose result the model writes right when everything before `=` is given."""
    from hicra.lab.model import format_prompt
    from hicra.lab.tasks.base import computation_lines

    rng = random.Random(seed)
    prompts, truths = [], []
    for p in problems:
        trace = task.family_of(p).oracle_trace(p, rng)
        prompt_ids = tokenizer(format_prompt(p.question))["input_ids"]
        pos = 0
        for x, op, y, z in computation_lines(trace):
            cut = trace.index(f"{x}{op}{y}=", pos) + len(f"{x}{op}{y}=")
            prompts.append(prompt_ids + tokenizer(trace[:cut])["input_ids"])
            truths.append(z)
            pos = cut
    if not prompts:
        return float("nan")
    outs = []
    for i in range(0, len(prompts), 256):
        outs += _greedy_forced(model, prompts[i : i + 256], 8, tokenizer.eos_token_id, tokenizer.pad_token_id,
                               tokenizer, calculator=False)
    right = 0
    for ids, z in zip(outs, truths, strict=True):
        text = tokenizer.decode(ids, skip_special_tokens=True).split("\n", 1)[0].strip()
        right += bool(_RESULT.fullmatch(text)) and int(text) == z
    return right / len(truths)


def planning_probe(model, tokenizer, task, problems, max_new_tokens: int) -> dict:
    """Greedy responses with a calculator filling every `=`: share solved, share solved with the cheapest
    strategy."""
    from hicra.lab.model import format_prompt

    prompts = [tokenizer(format_prompt(p.question))["input_ids"] for p in problems]
    outs = []
    for i in range(0, len(prompts), 128):
        outs += _greedy_forced(model, prompts[i : i + 128], max_new_tokens, tokenizer.eos_token_id,
                               tokenizer.pad_token_id, tokenizer, calculator=True)
    solved = cheapest = 0
    for p, ids in zip(problems, outs, strict=True):
        r = task.check(p, tokenizer.decode(ids, skip_special_tokens=True))
        solved += r.correct
        cheapest += r.correct and r.strategy == task.family_of(p).optimal_label(p)
    n = max(1, len(problems))
    return {"plan_probe_solved": solved / n, "plan_probe_cheapest": cheapest / n}


def run_probes(model, tokenizer, task, problems, max_new_tokens: int, step: int) -> dict:
    """One `probes.jsonl` row: step, exec_probe_line_accuracy, plan_probe_solved, plan_probe_cheapest."""
    model.eval()
    return {"step": step, "exec_probe_line_accuracy": execution_probe(model, tokenizer, task, problems),
            **planning_probe(model, tokenizer, task, problems, max_new_tokens)}
