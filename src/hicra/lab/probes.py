"""Skill probes: execution and planning measured apart, on held-out problems.

- Execution probe: teacher-force the noise-free trace of the cheapest strategy (an oracle plan) up to each `=`,
  let the model write the result greedily, and score it: `exec_probe_line_accuracy` is the share of lines whose
  written result is right. Planning is given, so only execution is measured.
- Planning probe: the model writes its own response greedily, but a calculator fills in the result after every
  `X op Y=` it writes (then a newline), so execution cannot fail: `plan_probe_solved` is the share of problems
  solved, `plan_probe_cheapest` the share solved with the cheapest strategy.

Both decode greedily, so a probe is a deterministic function of the weights. The execution probe has an exact
sampled counterpart, `exec_probe_line_prob` (`execution_probe_probability`): the mean probability that sampling at
RL's temperature writes a line right, read from the same teacher-forced forward.
"""

from __future__ import annotations

import random
import re

import numpy as np
import torch

from hicra.stats import interval_reading

_OPEN_LINE = re.compile(r"(\d+)([-+*/])(\d+)=$")


def _digit_ids(tokenizer) -> torch.Tensor:
    """Ids of the vocabulary entries that decode to digits only (the lab tokenizer writes digits one by one)."""
    vocab = tokenizer.get_vocab()
    return torch.tensor(sorted(i for i in vocab.values() if tokenizer.decode([i]).strip().isdigit()))


def execution_probe(model, tokenizer, task, problems, seed: int = 0, batch_size: int = 64) -> float:
    """Share of oracle-plan lines whose result the model writes right, and ends, when everything before `=` is given.

    One teacher-forced forward per trace: greedy decoding after `X op Y=` writes the true result Z exactly when the
    argmax at each of Z's digit positions is that digit (the context then equals the teacher-forced one) and the
    argmax after the last digit is not a digit. This equals decoding each line greedily, for all lines at once."""
    return execution_line_scores(model, tokenizer, task, problems, None, seed, batch_size)["greedy"]


def execution_probe_probability(model, tokenizer, task, problems, temperature: float, seed: int = 0,
                                batch_size: int = 64) -> float:
    """Mean over oracle-plan lines of the probability that sampling at `temperature` writes the line's result right
    and ends it, everything before `=` given: for a result of digit tokens z_1..z_m after the prefix c,

        P(line right) = prod_k softmax(logits(c, z_<k) / T)[z_k] * (1 - sum_{d digit} softmax(logits(c, z) / T)[d]).

    The execution probe's exact sampled counterpart (no draws: a deterministic function of the weights). Greedy
    accuracy counts a line right or wrong by its argmax; this probability also moves when RL sharpens or flattens
    the digits' distribution without changing the argmax, which is how the paper describes execution consolidating
    (execution tokens' perplexity falls). As T -> 0 it tends to `execution_probe` (tested)."""
    return execution_line_scores(model, tokenizer, task, problems, temperature, seed, batch_size)["probability"]


def execution_line_scores(model, tokenizer, task, problems, temperature: float | None, seed: int = 0,
                          batch_size: int = 64) -> dict:
    """{"greedy": share of lines right under greedy decoding, "probability": mean probability of a right line at
    `temperature` (None when temperature is None), "n_lines"} over the oracle traces of `problems` (see
    `execution_probe` and `execution_probe_probability`); nan shares when the traces hold no computation line."""
    from hicra.lab.model import format_prompt
    from hicra.lab.sampling import left_pad, positions
    from hicra.lab.tasks.base import computation_lines

    digits = _digit_ids(tokenizer)
    rng = random.Random(seed)
    rows, spans = [], []  # spans[i]: the (start, end) token positions of each result in row i
    for p in problems:
        trace = task.family_of(p).oracle_trace(p, rng)
        prompt_ids = tokenizer(format_prompt(p.question))["input_ids"]
        enc = tokenizer(trace, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        row_spans, pos = [], 0
        for x, op, y, z in computation_lines(trace):
            head = f"{x}{op}{y}="
            start_char = trace.index(head, pos) + len(head)
            end_char = start_char + len(str(z))
            toks = [t for t, (a, b) in enumerate(offsets) if a >= start_char and b <= end_char and b > a]
            row_spans.append((len(prompt_ids) + toks[0], len(prompt_ids) + toks[-1] + 1))
            pos = end_char
        rows.append(prompt_ids + enc["input_ids"])
        spans.append(row_spans)
    n_lines = sum(len(s) for s in spans)
    if not n_lines:
        return {"greedy": float("nan"), "probability": None if temperature is None else float("nan"), "n_lines": 0}
    right, prob = 0, 0.0
    for i in range(0, len(rows), batch_size):
        ids, mask = left_pad(rows[i : i + batch_size], tokenizer.pad_token_id)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions(mask),
                           use_cache=False).logits.float()
        best = logits.argmax(-1)
        logp = None if temperature is None else torch.log_softmax(logits / temperature, dim=-1)
        for j, row_spans in enumerate(spans[i : i + batch_size]):
            shift = ids.shape[1] - len(rows[i + j])  # left padding
            for a, b in row_spans:
                a, b = a + shift, b + shift
                wrote = bool((best[j, a - 1 : b - 1] == ids[j, a:b]).all())
                right += wrote and not bool(torch.isin(best[j, b - 1], digits))  # ... and the number ends
                if logp is not None:
                    written = logp[j, a - 1 : b - 1].gather(-1, ids[j, a:b, None]).sum()
                    ends = 1.0 - logp[j, b - 1, digits].exp().sum()
                    prob += float(written.exp() * ends.clamp(min=0.0))
    return {"greedy": right / n_lines, "probability": None if temperature is None else prob / n_lines,
            "n_lines": n_lines}


def calculator_decode(model, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Greedy responses (token ids, at most `max_new_tokens` each, the calculator's included) in which the true
    result and a newline follow every open computation line `X op Y=` the model writes.

    Models the plain-torch decoder supports (on the CPU) are decoded in one pass, the calculator's tokens fed in
    place of the argmax (`_calculator_decode_fast`); others in rounds: every unfinished response is continued
    greedily (batched, KV cache) until it writes a token ending in `=`, eos, or spends its budget, then the
    calculator appends the result and the next round prefills again. Both give the same tokens as forcing the
    result inside a token-by-token greedy loop (tested)."""
    from hicra.lab.fastdecode import unsupported_reason
    from hicra.lab.sampling import sample

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    equals = [i for i in tokenizer.get_vocab().values() if tokenizer.decode([i]).endswith("=")]
    newline = tokenizer("\n")["input_ids"]
    if prompts and unsupported_reason(model) is None and next(model.parameters()).device.type == "cpu":
        return _calculator_decode_fast(model, tokenizer, prompts, max_new_tokens, set(equals), newline)
    outs: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    while active:
        budget = max(max_new_tokens - len(outs[i]) for i in active)
        s = sample(model, [prompts[i] + outs[i] for i in active], budget, eos, pad, greedy=True, stop_ids=equals)
        still = []
        for i, new in zip(active, s.response_lists(), strict=True):
            outs[i] += new[: max_new_tokens - len(outs[i])]
            if len(outs[i]) >= max_new_tokens or not outs[i] or outs[i][-1] not in equals:
                continue  # eos, or out of budget
            outs[i] = (outs[i] + _forced_result(tokenizer, outs[i], newline))[:max_new_tokens]
            if len(outs[i]) < max_new_tokens:
                still.append(i)
        active = still
    return outs


def _forced_result(tokenizer, out: list[int], newline: list[int]) -> list[int]:
    """The calculator's tokens after a response that ends in an open line `X op Y=`: the true result and a newline
    ([] when the line does not parse or its result is no integer)."""
    from hicra.lab.tasks.base import apply_op

    tail = tokenizer.decode(out[-24:], skip_special_tokens=True).rsplit("\n", 1)[-1]
    m = _OPEN_LINE.search(tail)
    if not m:
        return []
    value = apply_op(int(m.group(1)), m.group(2), int(m.group(3)))
    if value is None or value.denominator != 1:
        return []
    return tokenizer(str(int(value)))["input_ids"] + newline


@torch.no_grad()
def _calculator_decode_fast(model, tokenizer, prompts, max_new_tokens, equals: set[int], newline) -> list[list[int]]:
    """`calculator_decode` in one pass of the plain-torch decoder: every row is decoded one token at a time with its
    KV cache, and a row whose queue holds calculator tokens is fed those instead of its argmax (no re-prefill after
    each line, as the rounds need)."""
    from hicra.lab.fastdecode import FastDecoder
    from hicra.lab.sampling import COMPACT, left_pad, positions

    eos = tokenizer.eos_token_id
    dec = FastDecoder(model)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    logits = dec.prefill(ids, mask, max_new_tokens)
    next_pos = positions(mask)[:, -1] + 1
    outs: list[list[int]] = [[] for _ in prompts]
    queues: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    held = list(range(len(prompts)))  # the prompts the decoder's batch holds, in its row order
    for _ in range(max_new_tokens):
        best = logits.argmax(-1).tolist()
        step_tok = []
        for row, i in enumerate(held):
            if done[i]:
                step_tok.append(eos)  # a finished row's token and logits are ignored
                continue
            tok = queues[i].pop(0) if queues[i] else best[row]
            outs[i].append(tok)
            if tok == eos or len(outs[i]) >= max_new_tokens:
                done[i] = True
            elif tok in equals and not queues[i]:
                queues[i] = _forced_result(tokenizer, outs[i], newline)
            step_tok.append(tok)
        running = [row for row, i in enumerate(held) if not done[i]]
        if not running:
            break
        if COMPACT * len(running) < len(held):  # compact the cache to the running rows, by `sample`'s rule
            keep = torch.tensor(running)
            dec.keep(keep)
            held, next_pos = [held[r] for r in running], next_pos[keep]
            step_tok = [step_tok[r] for r in running]
        logits = dec.step(torch.tensor(step_tok), next_pos)
        next_pos = next_pos + 1
    return outs


def planning_probe(model, tokenizer, task, problems, max_new_tokens: int) -> dict:
    """Greedy responses with a calculator filling every `=`: share solved, share solved with the cheapest
    strategy (`calculator_decode`)."""
    from hicra.lab.model import format_prompt

    prompts = [tokenizer(format_prompt(p.question))["input_ids"] for p in problems]
    outs = calculator_decode(model, tokenizer, prompts, max_new_tokens)
    solved = cheapest = 0
    for p, ids in zip(problems, outs, strict=True):
        r = task.check(p, tokenizer.decode(ids, skip_special_tokens=True))
        solved += r.correct
        cheapest += r.correct and r.strategy == task.family_of(p).optimal_label(p)
    n = max(1, len(problems))
    return {"plan_probe_solved": solved / n, "plan_probe_cheapest": cheapest / n}


def run_probes(model, tokenizer, task, problems, max_new_tokens: int, step: int,
               temperature: float | None = None) -> dict:
    """One `probes.jsonl` row: step, exec_probe_line_accuracy, plan_probe_solved, plan_probe_cheapest, and with a
    `temperature` (RL's sampling temperature) exec_probe_line_prob (`execution_probe_probability`)."""
    model.eval()
    scores = execution_line_scores(model, tokenizer, task, problems, temperature)
    return {"step": step, "exec_probe_line_accuracy": scores["greedy"],
            **({} if temperature is None else {"exec_probe_line_prob": scores["probability"]}),
            **planning_probe(model, tokenizer, task, problems, max_new_tokens)}


def strategy_accuracy(model, tokenizer, task, problems, k: int, temperature: float, max_new_tokens: int,
                      seed: int = 0, batch_size: int = 256, greedy: bool = False, own: bool = True,
                      hinted: bool = True) -> list[dict]:
    """How well the policy executes each strategy when the prompt names it, and how well it does on its own.

    For every problem and every strategy that applies to it (`Family.applicable`), `k` responses sampled at
    `temperature` from the hinted prompt `question + HINT + strategy` (`hicra.lab.sft.HINT`: the warm start's
    corpus names a strategy this way in a share `strategy_hints` of its prompts), and `k` from the plain prompt
    (the policy's own choice, `strategy` None), each scored by the task's checker. Returns one row per (problem,
    strategy): `problem_id`, `family`, `decision_class` (`Family.decision_class`), `strategy`, `k`, `n_correct`,
    `n_followed` (responses whose parsed strategy is the one named; for the own-choice row, those that executed
    the cost model's cheapest), `executed` (parsed strategy -> count, `unparsed` for none). `greedy` decodes
    greedily instead (use k = 1); `own=False` leaves out the plain prompts and `hinted=False` the hinted ones
    (ValueError when both are off). A policy that ignores hints executes its own choice on hinted prompts too: read
    `n_followed` before `n_correct`. Deterministic in `seed`; responses are cut at `max_new_tokens` and checked like
    any other, as in RL (a cut response has no answer line: a format error)."""
    from hicra.lab.model import format_prompt
    from hicra.lab.sampling import sample
    from hicra.lab.sft import HINT

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not (own or hinted):
        raise ValueError("own and hinted are both False: no prompt to sample")
    cells = []  # (problem, strategy or None)
    for p in problems:
        cells += [(p, s) for s in task.family_of(p).applicable(p) if hinted] + ([(p, None)] if own else [])
    prompts = [tokenizer(format_prompt(p.question + (HINT + s if s else "")))["input_ids"]
               for p, s in cells for _ in range(k)]
    gen = torch.Generator().manual_seed(seed)
    texts = []
    model.eval()
    for i in range(0, len(prompts), batch_size):
        out = sample(model, prompts[i : i + batch_size], max_new_tokens, tokenizer.eos_token_id,
                     tokenizer.pad_token_id, generator=gen, temperature=temperature, greedy=greedy)
        texts += [tokenizer.decode(ids, skip_special_tokens=True) for ids in out.response_lists()]
    rows = []
    for j, (p, s) in enumerate(cells):
        fam = task.family_of(p)
        target = s or fam.optimal_label(p)
        correct = followed = 0
        executed: dict[str, int] = {}
        for text in texts[j * k : (j + 1) * k]:
            r = task.check(p, text)
            correct += r.correct
            followed += r.strategy == target
            executed[r.strategy or "unparsed"] = executed.get(r.strategy or "unparsed", 0) + 1
        rows.append({"problem_id": p.id, "family": p.family, "decision_class": fam.decision_class(p),
                     "strategy": s, "k": k, "n_correct": correct, "n_followed": followed, "executed": executed})
    return rows


def _natural(name: str) -> list:
    """Sort key that orders the numbers inside a name by value (`n=2` before `n=11`)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def class_optimum(rows: list[dict]) -> dict:
    """The reward-optimal way to choose a strategy by problem class, for a policy that executes each strategy as
    measured by `strategy_accuracy` (`rows`), and what choosing by class gains over one strategy everywhere.

    Picking the best of noisy accuracies overstates it, so every figure that involves a choice is cross-fitted:
    problems are split in two folds by a hash of their id; the choice made on one fold's problems is scored on the
    other's, and the other way round. Per family:

    - `by_class`: accuracy of choosing, in each `decision_class`, the strategy most accurate on the other fold (on a
      problem it does not apply to, the class's next best that does; a class absent from the other fold takes the
      family's order);
    - `single_route`: accuracy of the one strategy most accurate on the other fold, among those that apply to
      every problem of the family;
    - `gain`: by_class - single_route (what planning by problem can earn, in accuracy);
    - `own`: accuracy of the policy's own choice (unhinted prompts), and `own_cheapest` the share of those
      responses that executed the cost model's cheapest strategy;
    - `own_best`: the share of own-choice responses that executed their class's `best`; `own_information`: the
      mutual information (nats, plug-in) between the class and the strategy the policy executes on its own, 0 for
      a choice blind to the class; `own_information_bias`: the plug-in estimate's expected value under
      independence, (classes - 1)(labels - 1) / 2N (Miller-Madow), to read small values against;
    - `classes`: per class its share of problems, each strategy's accuracy and share followed (all problems),
      `best` (on all problems; ties go to the strategy listed first) and `own_choice` (label -> share of the
      own-choice responses);
    - `entropy_by_class`: entropy (nats) of the strategies `best` picks, weighted by class share: the
      measured optimum's strategy entropy within the family, to set beside the cost model's. In-sample (not
      cross-fitted): with few problems a class, noise in `best` makes it look more diverse than it is.
    `own_information` counts responses with no parsed strategy (`unparsed`) as one more choice.
    Accuracies are shares in [0, 1]; ValueError on rows without any hinted strategy."""
    from collections import defaultdict

    from hicra.lab.tasks.base import entropy, stable_hash

    acc: dict = defaultdict(dict)  # family -> problem -> strategy -> accuracy
    followed: dict = defaultdict(dict)
    klass, own, own_cheapest = {}, defaultdict(list), defaultdict(list)
    own_counts: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))  # family -> class -> strategy -> n
    order: dict = defaultdict(list)  # family -> strategies in first-seen order (the family's tie-break order)
    for r in rows:
        fam, pid, s = r["family"], r["problem_id"], r["strategy"]
        klass[pid] = r["decision_class"]
        if s is None:
            own[fam].append(r["n_correct"] / r["k"])
            own_cheapest[fam].append(r["n_followed"] / r["k"])
            for label, n in r.get("executed", {}).items():
                own_counts[fam][r["decision_class"]][label] += n
            continue
        acc[fam].setdefault(pid, {})[s] = r["n_correct"] / r["k"]
        followed[fam].setdefault(pid, {})[s] = r["n_followed"] / r["k"]
        if s not in order[fam]:
            order[fam].append(s)
    if not acc:
        raise ValueError("class_optimum: no row names a strategy (hinted rows are needed)")

    def mean(xs):
        return sum(xs) / len(xs) if xs else float("nan")

    def ranking(pids, fam, key):
        """Strategies by mean accuracy over `pids` (grouped by `key`), best first, ties by the family's order."""
        out = defaultdict(lambda: defaultdict(list))
        for pid in pids:
            for s, a in acc[fam][pid].items():
                out[key(pid)][s].append(a)
        return {g: sorted(v, key=lambda s: (-mean(v[s]), order[fam].index(s))) for g, v in out.items()}

    report = {}
    for fam, table in acc.items():
        fold = {pid: stable_hash(pid) % 2 for pid in table}
        everywhere = [s for s in order[fam] if all(s in table[pid] for pid in table)]
        by_class, single = [], []
        for f in (0, 1):
            train = [pid for pid in table if fold[pid] == f]
            test = [pid for pid in table if fold[pid] != f]
            per_class = ranking(train, fam, lambda pid: klass[pid])
            overall = ranking(train, fam, lambda pid: "all").get("all", order[fam])
            single_pick = next((s for s in overall if s in everywhere), None)
            for pid in test:
                ranked = per_class.get(klass[pid], overall)
                pick = next(s for s in ranked + overall + order[fam] if s in table[pid])
                by_class.append(table[pid][pick])
                if single_pick is not None:
                    single.append(table[pid][single_pick])
        classes = {}
        for c, ranked in sorted(ranking(list(table), fam, lambda pid: klass[pid]).items(),
                                key=lambda kv: _natural(kv[0])):
            pids = [pid for pid in table if klass[pid] == c]
            classes[c] = {"share": len(pids) / len(table), "best": ranked[0],
                          "accuracy": {s: mean([table[p][s] for p in pids if s in table[p]]) for s in ranked},
                          "followed": {s: mean([followed[fam][p][s] for p in pids if s in table[p]]) for s in ranked}}
        picks = defaultdict(float)
        for c in classes.values():
            picks[c["best"]] += c["share"]
        counts = own_counts.get(fam, {})
        n_own = sum(sum(v.values()) for v in counts.values())
        for c, v in classes.items():
            total = sum(counts.get(c, {}).values())
            v["own_choice"] = {s: n / total for s, n in sorted(counts.get(c, {}).items())} if total else {}
        joint = {(c, s): n for c, v in counts.items() for s, n in v.items()}
        by_label = defaultdict(int)
        for (_, label), n in joint.items():
            by_label[label] += n
        information = (entropy(by_label) + entropy({c: sum(v.values()) for c, v in counts.items()})
                       - entropy(joint)) if n_own else float("nan")
        own_best = sum(counts.get(c, {}).get(v["best"], 0) for c, v in classes.items()) / n_own if n_own else float("nan")
        report[fam] = {"n_problems": len(table), "by_class": mean(by_class), "single_route": mean(single),
                       "gain": mean(by_class) - mean(single), "own": mean(own[fam]),
                       "own_cheapest": mean(own_cheapest[fam]), "own_best": own_best,
                       "own_information": information,
                       "own_information_bias": (len(counts) - 1) * (len(by_label) - 1) / (2 * n_own) if n_own else float("nan"),
                       "entropy_by_class": entropy(picks),
                       "classes": classes}
    return report


def heldout_strategies(model, tokenizer, task, problems, k: int, temperature: float, max_new_tokens: int,
                       seed: int = 0) -> dict:
    """The policy's own strategy choices on fixed problems: `k` responses per problem sampled at `temperature` from
    the plain prompt (`strategy_accuracy(..., hinted=False)`), each parsed by the task's checker.

    Returns {"k", "problem_ids": [P], "labels": [L], "counts": (P, L) nested lists, "unparsed": [P]}: a label of n
    "+"-joined parts counts 1/n for each part (as `hicra.dynamics.metrics.strategy_counts`), so every parsed
    response weighs 1; `unparsed` counts the responses without a parsed strategy (cut off, or malformed).
    Deterministic in `seed`; draws from its own generator. The input of `heldout_strategy_change`."""
    rows = strategy_accuracy(model, tokenizer, task, problems, k, temperature, max_new_tokens, seed=seed,
                             hinted=False)
    ids = [p.id for p in problems]
    labels, counts, unparsed = strategy_label_counts(rows, ids)
    return {"k": k, "problem_ids": ids, "labels": labels, "counts": counts.tolist(), "unparsed": unparsed.tolist()}


def strategy_label_counts(rows: list[dict], problem_ids: list[str]):
    """(label names [L], counts (P, L) array, unparsed (P,) array) from `strategy_accuracy`'s own-choice rows, in
    the order of `problem_ids`; each response's "+"-joined parts count 1/parts each
    (`hicra.dynamics.metrics.strategy_counts`). ValueError naming the first problem without an own-choice row."""
    from hicra.dynamics.metrics import strategy_counts

    by_id = {r["problem_id"]: r for r in rows if r["strategy"] is None}
    missing = [p for p in problem_ids if p not in by_id]
    if missing:
        raise ValueError(f"no own-choice row for problem {missing[0]}")
    labels, owner = [], []  # one entry per parsed response, and the index of its problem
    unparsed = np.zeros(len(problem_ids))
    for i, pid in enumerate(problem_ids):
        for lab, n in by_id[pid]["executed"].items():
            if lab == "unparsed":
                unparsed[i] += n
            else:
                labels += [lab] * n
                owner += [i] * n
    names, per_response = strategy_counts(labels)
    counts = np.zeros((len(problem_ids), len(names)))
    np.add.at(counts, owner, per_response)
    return names, counts, unparsed


def strategy_entropies(counts, family, weights=None):
    """(H, H|fam), each (B,) arrays, of label counts (P, L) with problem families (P,), under bootstrap
    multiplicities `weights` (B, P) (None: the sample itself, B = 1).

    H is the entropy (nats) of all labels pooled; H|fam = sum_f w_f H(labels of family f), w_f the family's share of
    the (weighted) problems, which does not depend on how many of a family's responses were parsed."""
    from hicra.dynamics.phases import entropy_rows

    w = np.ones((1, counts.shape[0])) if weights is None else weights
    total = w.sum(axis=1)
    within = np.zeros(w.shape[0])
    for f in np.unique(family):
        wf = w[:, family == f]
        within += wf.sum(axis=1) / total * entropy_rows(wf @ counts[family == f])
    return entropy_rows(w @ counts), within


def strategy_entropy_change(before, after, family, boot: int = 2000, seed: int = 0) -> dict:
    """H and H|fam (`strategy_entropies`) at both ends and their changes (after - before), with 95% percentile
    intervals from a paired bootstrap over problems: one multinomial draw of problem multiplicities weighs both
    ends. `before`, `after`: (P, L) label counts over the same problems and labels; `family`: (P,).
    `reading` is "rise" when the interval of the H|fam change lies above 0, "fall" below, "-" otherwise.
    ValueError when the shapes differ or there is no problem."""
    family = np.asarray(family)
    if before.shape != after.shape or before.shape[0] != len(family) or not len(family):
        raise ValueError(f"shapes differ or empty: {before.shape}, {after.shape}, {len(family)} families")
    h0, w0 = strategy_entropies(before, family)
    h1, w1 = strategy_entropies(after, family)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(family), np.full(len(family), 1 / len(family)), size=boot).astype(float)
    bh0, bw0 = strategy_entropies(before, family, weights)
    bh1, bw1 = strategy_entropies(after, family, weights)
    out = {"H_before": float(h0[0]), "H_after": float(h1[0]), "H_change": float(h1[0] - h0[0]),
           "H_interval": [float(x) for x in np.percentile(bh1 - bh0, [2.5, 97.5])],
           "Hfam_before": float(w0[0]), "Hfam_after": float(w1[0]), "Hfam_change": float(w1[0] - w0[0]),
           "Hfam_interval": [float(x) for x in np.percentile(bw1 - bw0, [2.5, 97.5])]}
    out["reading"] = interval_reading(out["Hfam_interval"])
    return out


def heldout_strategy_change(before: dict, after: dict, boot: int = 2000, seed: int = 0) -> dict:
    """Does the policy's strategy diversity on fixed problems change between two `heldout_strategies` records
    (e.g. the warm start and the trained policy)? `strategy_entropy_change` over the problems (family = the id's
    prefix), plus `n_problems`, the unparsed shares `unparsed_before` / `unparsed_after`, and the H|fam change on
    the problems with no unparsed response at either end (`n_complete`, `Hfam_complete_change`,
    `Hfam_complete_interval`; None with fewer than 2 such problems): dropping unparsed responses could move H|fam
    when they are more common under one strategy. ValueError when the records' problems differ."""
    if before["problem_ids"] != after["problem_ids"]:
        raise ValueError("the two records are on different problems")
    names = sorted(set(before["labels"]) | set(after["labels"]))

    def full(rec):
        m = np.zeros((len(rec["problem_ids"]), len(names)))
        if rec["labels"]:
            m[:, [names.index(x) for x in rec["labels"]]] = np.asarray(rec["counts"], dtype=float)
        return m

    c0, c1 = full(before), full(after)
    u0, u1 = np.asarray(before["unparsed"], dtype=float), np.asarray(after["unparsed"], dtype=float)
    family = np.array([i.split(":")[0] for i in before["problem_ids"]])
    out = strategy_entropy_change(c0, c1, family, boot, seed)
    out.update(n_problems=len(family), unparsed_before=float(u0.sum() / (len(family) * before["k"])),
               unparsed_after=float(u1.sum() / (len(family) * after["k"])))
    complete = (u0 == 0) & (u1 == 0)
    out["n_complete"] = int(complete.sum())
    out["Hfam_complete_change"] = out["Hfam_complete_interval"] = None
    if complete.sum() >= 2:
        cc = strategy_entropy_change(c0[complete], c1[complete], family[complete], boot, seed)
        out["Hfam_complete_change"], out["Hfam_complete_interval"] = cc["Hfam_change"], cc["Hfam_interval"]
    return out
