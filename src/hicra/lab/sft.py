"""Warm start: a corpus from scripted solvers, a mined planning lexicon, a tokenizer, supervised fine-tuning.

The corpus knobs (`CorpusKnobs`: execution noise, strategy prior, planning noise; `optimum` picks the task
variant) make the base policy imperfect at both levels: it imitates traces that sometimes slip on a computation
line, choose a strategy blind to the problem (or the cheapest one: `oracle`) and sometimes misapply it. The corpus
is drawn from the training split only. The run's planning lexicon is mined from the corpus's successful traces
(`hicra.planning.mining.mine`, the paper's recipe), format phrases that nearly every trace contains removed, and
frozen with the warm start (`lexicon.json`) before any RL. `evaluate` measures accuracy, the error types, the
strategy entropy and the share of responses that used the cheapest strategy, with the exact checkers.

Warm starts are cached: the directory name is a hash of every setting (`WarmStartConfig.key()`), so a second run
with the same settings loads the saved model instead of training it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from hicra.errors import InputError
from hicra.lab.tasks import CorpusKnobs, Problem, TaskMix

CACHE_VERSION = 3  # bump when the corpus, tokenizer or training code changes what a key produces


@dataclass
class WarmStartConfig:
    tasks: list[dict] = field(default_factory=lambda: [{"family": "series"}, {"family": "product"},
                                                       {"family": "multi"}])
    optimum: str = "diverse"  # task variant: "diverse" | "single-route" (one strategy cheapest everywhere)
    execution_noise: float = 0.015
    strategy_prior: str = "blind"  # "blind" | "oracle" | "blind-common" (CorpusKnobs)
    planning_noise: float = 0.1
    heldout_share: float = 0.1
    n_train: int = 4000  # corpus size (problem, trace) pairs
    vocab_size: int = 384
    size: str = "1m"
    arch: str = "qwen2"
    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_response_tokens: int = 192  # longer traces are dropped from the corpus
    mine_top: float = 0.2  # share of n-gram clusters kept by the miner (the paper's 0.2)
    format_share: float = 0.9  # a mined gram in at least this share of successful traces is format, not planning
    n_drill: int = 0  # arithmetic drills added to the SFT data (`build_drills`): clean computation lines only
    drill_lines: int = 12  # computation lines per drill
    seed: int = 0  # the warm-start seed: corpus, initialisation and SFT order (`hicra lab --warm-start-seed`)
    lr_floor: float = 0.1  # the cosine schedule ends at lr_floor * lr
    ema_decay: float = 0.0  # > 0: the warm start is the exponential moving average of the SFT weights (0 = off)
    strategy_hints: float = 0.0  # share of corpus pairs whose prompt names a uniformly drawn strategy (build_corpus)
    favourite_share: float = 0.0  # blind priors: the favourite's probability (CorpusKnobs; 0 = the family's table)
    slip_cap: int = 0  # most units of line difficulty the slip rate counts (CorpusKnobs; 0 = no cap, 1 = uniform)
    logprob_layout: str = "split"  # SFT batches: "split" | "joined" (`hicra.lab.sampling.sequence_logprobs`)
    compile_sft: bool = False  # run SFT's forward through torch.compile (falls back to eager, logged, if it fails)

    def knobs(self) -> CorpusKnobs:
        return CorpusKnobs(self.execution_noise, self.strategy_prior, self.planning_noise, self.favourite_share,
                           self.slip_cap)

    def task_mix(self) -> TaskMix:
        return TaskMix(self.tasks, optimum=self.optimum, heldout_share=self.heldout_share)

    def __post_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if not 0.0 <= self.lr_floor <= 1.0:
            raise ValueError(f"lr_floor must be in [0, 1], got {self.lr_floor}")
        if not 0.0 <= self.strategy_hints <= 1.0:
            raise ValueError(f"strategy_hints must be in [0, 1], got {self.strategy_hints}")
        from hicra.lab.model import check_layout

        check_layout(self.logprob_layout, "logprob_layout")
        self.knobs()  # the corpus knobs validate themselves (CorpusKnobs): a bad one fails here, not mid-build

    def settings(self) -> dict:
        """Every field, except fields added after cache version 3 (`_LATER_FIELDS`) while they hold the default
        that reproduces the earlier behaviour: what the cache key hashes and what a study directory records, so
        warm starts and study directories made before those fields existed stay valid."""
        defaults = {f.name: f.default for f in fields(self) if f.name in _LATER_FIELDS}
        return {k: v for k, v in asdict(self).items() if not (k in defaults and v == defaults[k])}

    def key(self) -> str:
        """Cache key: a hash of `settings()` and CACHE_VERSION."""
        blob = json.dumps({"v": CACHE_VERSION, **self.settings()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# added after cache version 3; their defaults keep the old behaviour
_LATER_FIELDS = ("lr_floor", "ema_decay", "strategy_hints", "favourite_share", "logprob_layout", "compile_sft",
                 "slip_cap")


HINT = " using "  # a hinted prompt: the question, then " using STRATEGY" (e.g. "sum 3 to 9 by 2 using pairing")


def build_corpus(task: TaskMix, n: int, knobs: CorpusKnobs, seed: int,
                 strategy_hints: float = 0.0) -> list[tuple[Problem, str]]:
    """`n` (problem, trace) pairs from the scripted solvers, training split only (deterministic in `seed`).

    With probability `strategy_hints` a pair is a *hinted* one: its strategy is drawn uniformly from those that
    apply and named in the prompt (`question + HINT + strategy`), so the warm start learns to execute every
    strategy while its unhinted choice (the prompts RL and evaluation use) still follows `knobs.strategy_prior`."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        problem = task.sample(rng, "train")
        if strategy_hints and rng.random() < strategy_hints:
            strategy = rng.choice(task.family_of(problem).applicable(problem))
            text = task.solve(problem, rng, knobs, strategy)
            problem = replace(problem, question=problem.question + HINT + strategy)
        else:
            text = task.solve(problem, rng, knobs)
        out.append((problem, text))
    return out


DRILL_PROMPT = "practice"


def build_drills(task: TaskMix, n: int, lines_per_drill: int, seed: int) -> list[str]:
    """`n` arithmetic drills: each `lines_per_drill` computation lines `x op y=z`, all correct, taken from the
    noise-free plans of training problems (training split only), with a strategy drawn uniformly from those that
    apply, so every line any strategy needs is practised, not only the warm-start prior's.

    Why: the traces spend most of their tokens on planning phrases, so a tiny model sees few computation lines per
    second of SFT; drills (prompt `DRILL_PROMPT`) are the arithmetic a pretrained model brings to RL. They contain
    no planning phrase, no answer line and no problem statement. Deterministic in `seed`."""
    from hicra.lab.tasks.base import execute

    rng = random.Random(seed)
    pool: list[str] = []
    drills = []
    for _ in range(n):
        while len(pool) < lines_per_drill:
            problem = task.sample(rng, "train")
            family = task.family_of(problem)
            plan = family.plan(problem, rng.choice(family.applicable(problem)))
            pool += [f"{x}{op}{y}={z}" for x, op, y, z in execute(plan)[0]]
        drills.append("\n".join(pool[:lines_per_drill]))
        pool = pool[lines_per_drill:]
    return drills


def mine_lab_lexicon(task: TaskMix, pairs, cfg: WarmStartConfig, progress: bool = False):
    """The run's planning lexicon, mined from the corpus's successful traces (`hicra.planning.mining.mine`, 3-5
    word grams, all-MiniLM-L6-v2, average-linkage clustering at 0.3, top `mine_top` of clusters), less the format
    grams that at least `format_share` of the successful traces contain ("so the answer is": every answer has
    it, so it carries no choice). Returns (lexicon, report)."""
    from hicra.planning.lexicon import Lexicon
    from hicra.planning.mining import Document, mine, ngrams

    docs = [Document(t, p.question) for p, t in pairs if task.check(p, t).correct]
    result = mine(docs, top=cfg.mine_top, name="lab", progress=progress)
    df = Counter(g for d in docs for g in ngrams(d.text))
    fmt = {ph.text for ph in result.lexicon if df[ph.text] >= cfg.format_share * len(docs)}
    kept = [ph for ph in result.lexicon if ph.text not in fmt]
    lexicon = Lexicon(kept, name="lab", description=result.lexicon.description
                      + f" Format grams in >= {cfg.format_share:.0%} of the traces removed: {sorted(fmt)}.")
    report = {k: v for k, v in result.report.items() if k != "clusters"}
    report.update(format_removed=sorted(fmt), n_phrases=len(kept))
    return lexicon, report


def response_ids(tokenizer, trace: str) -> list[int]:
    """A trace's token ids as the warm start trains on them: the trace's tokens, then the end token (its length is
    what `max_response_tokens` bounds)."""
    return tokenizer(trace)["input_ids"] + [tokenizer.eos_token_id]


def encode_pairs(tokenizer, pairs, max_response_tokens: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + eos) per pair; pairs whose response is too long are dropped."""
    from hicra.lab.model import format_prompt

    out = []
    for problem, trace in pairs:
        prompt = tokenizer(format_prompt(problem.question))["input_ids"]
        response = response_ids(tokenizer, trace)
        if len(response) <= max_response_tokens:
            out.append((prompt, response))
    return out


def length_batches(examples: list, batch_size: int, rng: random.Random) -> list[list]:
    """Shuffle, sort by length inside windows of 16 batches (less padding), then shuffle the batches."""
    order = list(examples)
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for i in range(0, len(order), window):
        chunk = sorted(order[i : i + window], key=lambda e: len(e[0]) + len(e[1]))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_batch(batch, pad_id: int):
    """Left-padded prompts and right-padded responses as tensors (the layout the sampler produces)."""
    import torch

    from hicra.lab.sampling import left_pad

    prompt_ids, prompt_mask = left_pad([p for p, _ in batch], pad_id)
    width = max(len(r) for _, r in batch)
    response_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, (_, r) in enumerate(batch):
        response_ids[i, : len(r)] = torch.tensor(r)
        response_mask[i, : len(r)] = True
    return prompt_ids, prompt_mask, response_ids, response_mask


def train_sft(model, examples, cfg: WarmStartConfig, progress: bool = True, device: str = "cpu",
              log=print) -> tuple[list[float], bool]:
    """Next-token cross-entropy on response tokens (token mean), AdamW, linear warmup then cosine decay to
    `cfg.lr_floor * cfg.lr`, on `device` (the model is moved there and back to the CPU at the end). With
    `cfg.ema_decay > 0` the model's weights are replaced at the end by their exponential moving average over the
    optimiser steps (torch.optim.swa_utils; decay d: w_ema <- d * w_ema + (1 - d) * w). Batches reach the model in
    `cfg.logprob_layout`; with `cfg.compile_sft` through `torch.compile(model, dynamic=True)`, and if compiling
    fails at the first step (no C++ toolchain), eagerly from there, logged. Returns the loss of every optimiser step
    and whether torch.compile ran."""
    import torch
    from tqdm.auto import tqdm

    from hicra.lab.sampling import sequence_logprobs

    rng = random.Random(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    epochs = [length_batches(examples, cfg.batch_size, rng) for _ in range(cfg.epochs)]
    total = sum(len(e) for e in epochs)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay)) if cfg.ema_decay > 0 else None)
    model.train()
    forward = torch.compile(model, dynamic=True) if cfg.compile_sft else model
    losses = []
    bar = tqdm(total=total, desc="warm start (SFT)", disable=None if progress else True, leave=False)
    tokens, t0 = 0, time.perf_counter()
    for batches in epochs:
        for batch in batches:
            p_ids, p_mask, r_ids, r_mask = (t.to(device) for t in pad_batch(batch, model.config.pad_token_id))
            try:
                logp = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, layout=cfg.logprob_layout,
                                         forward=forward)
            except Exception as err:  # torch.compile needs a working C++ toolchain; without one, train eagerly
                if forward is model or losses:
                    raise
                log(f"warm start: torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                    "training without it")
                forward = model
                logp = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, layout=cfg.logprob_layout)
            loss = -(logp * r_mask).sum() / r_mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss.item())
            tokens += int(p_mask.sum() + r_mask.sum())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens / (time.perf_counter() - t0):.0f}")
    bar.close()
    if ema is not None:  # no batch norm here, so the averaged parameters are the whole model state
        with torch.no_grad():
            for p, q in zip(model.parameters(), ema.module.parameters(), strict=True):
                p.copy_(q)
    model.to("cpu")
    model.eval()
    return losses, forward is not model


def evaluate(model, tokenizer, task: TaskMix, problems: list[Problem], max_new_tokens: int, seed: int = 0,
             greedy: bool = False, batch_size: int = 128, temperature: float = 1.0) -> dict:
    """One response per problem: accuracy, error-type counts `n_errors_<type>` and shares of all responses
    `errors_<type>_share` (`hicra.dynamics.vocab.error_columns`), mean length (tokens), the entropy (nats) of the
    strategy labels the checker parsed, the share of responses that used the cheapest strategy, and accuracy per
    family."""
    import torch

    from hicra.lab.model import format_prompt
    from hicra.lab.sampling import sample
    from hicra.lab.tasks.base import entropy

    gen = torch.Generator().manual_seed(seed)
    counts: Counter = Counter()
    strategies: Counter = Counter()
    per_family: dict[str, list[bool]] = {}
    cheapest = 0
    lengths = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i : i + batch_size]
        prompts = [tokenizer(format_prompt(p.question))["input_ids"] for p in chunk]
        s = sample(model, prompts, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                   generator=gen, greedy=greedy, temperature=temperature)
        for p, ids in zip(chunk, s.response_lists(), strict=True):
            r = task.check(p, tokenizer.decode(ids, skip_special_tokens=True))
            counts[r.error_type] += 1
            lengths.append(len(ids))
            per_family.setdefault(p.family, []).append(r.correct)
            if r.strategy is not None:
                strategies[(p.family, r.strategy)] += 1
                cheapest += r.strategy == task.family_of(p).optimal_label(p)
    n = len(problems)
    from hicra.dynamics.vocab import error_columns

    return {"n": n, "accuracy": counts[None] / n, **error_columns(counts.elements()),
            "mean_length": sum(lengths) / n, "strategy_entropy": entropy(strategies),
            "strategy_parsed": sum(strategies.values()) / n, "cheapest_share": cheapest / n,
            "accuracy_by_family": {f: sum(v) / len(v) for f, v in sorted(per_family.items())}}


def eval_problems(task: TaskMix, n: int, seed: int = 0) -> list[Problem]:
    """A fixed held-out problem set from the held-out split (disjoint from every training draw by construction;
    its own RNG stream)."""
    return task.heldout(n, seed)


def corpus_statistics(task: TaskMix, pairs, checks, lexicon, tokenizer) -> dict:
    """Strategy entropy of the corpus's unhinted pairs (nats), how many of the lexicon's strategic grams occur in its first 2,000
    traces, and the share of their tokens the lexicon tags as planning."""
    from hicra.lab.tasks.base import entropy
    from hicra.planning.mining import ngrams
    from hicra.planning.tagger import PlanningTagger

    labels = Counter((p.family, c.strategy) for (p, _), c in zip(pairs, checks, strict=True)
                     if c.strategy and HINT not in p.question)  # the unhinted choice: the prior's
    tagger = PlanningTagger(lexicon, tokenizer)
    corpus_grams: set[str] = set()
    planning = total = 0
    for _, text in pairs[:2000]:
        corpus_grams |= ngrams(text, 1, 8)
        mask = tagger.token_mask(tokenizer(text)["input_ids"])
        planning += int(sum(mask))
        total += len(mask)
    grams = {ph.key for ph in lexicon} & corpus_grams
    return {"strategy_entropy": entropy(labels), "distinct_strategic_grams": len(grams),
            "planning_token_share": planning / max(1, total)}


def warm_start_dir(cfg: WarmStartConfig, cache_root: str | Path) -> Path:
    """CACHE_ROOT/warmstart-KEY: where `warm_start` keeps (or will keep) the model of `cfg`; it is ready when its
    warm_start.json exists (written last, by an atomic rename of the whole folder)."""
    return Path(cache_root) / f"warmstart-{cfg.key()}"


def _unfinished(out: Path) -> InputError:
    return InputError("exists but holds no warm_start.json (not a finished warm start): remove it", path=str(out))


def _finished(out: Path, log) -> bool:
    """Whether the cache folder `out` holds a finished warm start (logged as reused); InputError when it exists
    without one (only a rename of a finished build makes the folder: refused before training, not after)."""
    if (out / "warm_start.json").exists():
        log(f"warm start: reusing {out}")
        return True
    if out.exists():
        raise _unfinished(out)
    return False


def warm_start(cfg: WarmStartConfig, cache_root: str | Path, progress: bool = True, log=print,
               device: str = "cpu", threads: int = 1) -> Path:
    """Train (or load from the cache) the warm-start model; returns its directory (model + tokenizer +
    warm_start.json with the settings, corpus statistics, training losses, the device and the torch threads SFT
    ran on).

    `device` ("cpu", "cuda") and `threads` (torch CPU threads, >= 1; default 1, the study's one process per core)
    are not part of the cache key: like two CPUs, two devices or thread counts give weights that differ in the last
    bits, which SFT amplifies, so a warm start trained with either changed is a different draw of the same recipe.
    On an idle 2-core machine two threads train the 1m model 1.7x faster than one (docs/lab.md, "The cold demo and
    the execution probe").

    One process builds a key at a time: a build holds a lock on CACHE_ROOT/.warmstart-KEY.lock, and another process
    asking for the same key waits for it, then reuses its build. The lock also tells a killed build's temp folders
    (`warmstart-KEY.tmpN`) from a running one's, so the next build removes them.

    Raises InputError when the cache folder exists without warm_start.json (not a finished build)."""
    import torch

    from hicra.fileio import file_lock

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    out = warm_start_dir(cfg, cache_root)
    if _finished(out, log):  # no lock needed to reuse a build (a cache may be read-only)
        return out
    lock = out.with_name(f".{out.name}.lock")
    with file_lock(lock, on_wait=lambda _: log(f"warm start: another process is building {out}; waiting for it")) \
            as locked:
        if _finished(out, log):  # built while this process waited
            return out
        if locked:  # no other build of this key runs, so its temp folders were left by killed builds
            for stale in sorted(out.parent.glob(f"{out.name}.tmp*")):
                shutil.rmtree(stale, ignore_errors=True)
                log(f"warm start: removed {stale}, left by a build that did not finish")
        t0 = time.perf_counter()
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return _train_warm_start(cfg, out, t0, progress, log, device)
        finally:
            torch.set_num_threads(before)


def _train_warm_start(cfg: WarmStartConfig, out: Path, t0: float, progress: bool, log, device: str) -> Path:
    import torch

    from hicra.lab.model import build_model, count_parameters, format_prompt, train_tokenizer

    task = cfg.task_mix()
    pairs = build_corpus(task, cfg.n_train, cfg.knobs(), seed=cfg.seed, strategy_hints=cfg.strategy_hints)
    checks = [task.check(p, t) for p, t in pairs]
    corpus_errors = Counter(c.error_type for c in checks)
    lexicon, mining = mine_lab_lexicon(task, pairs, cfg, progress=progress)
    tokenizer = train_tokenizer([format_prompt(p.question) + t for p, t in pairs], vocab_size=cfg.vocab_size)
    examples = encode_pairs(tokenizer, pairs, cfg.max_response_tokens)
    drills = build_drills(task, cfg.n_drill, cfg.drill_lines, seed=cfg.seed + 2)
    drill_examples = encode_pairs(tokenizer, [(Problem("drill", "drill", DRILL_PROMPT, 0), d) for d in drills],
                                  cfg.max_response_tokens)
    model = build_model(tokenizer, size=cfg.size, arch=cfg.arch, seed=cfg.seed)
    log(f"warm start: {len(examples)} traces ({len(pairs) - len(examples)} longer than {cfg.max_response_tokens} "
        f"response tokens dropped), {count_parameters(model) / 1e6:.2f}M-parameter {cfg.arch}, "
        f"{cfg.epochs} epochs, {len(drills)} arithmetic drills, {len(lexicon)} mined strategic grams")
    losses, compiled = train_sft(model, examples + drill_examples, cfg, progress=progress, device=device, log=log)
    info = {"config": asdict(cfg), "key": cfg.key(), "parameters": count_parameters(model),
            "corpus": {"n": len(pairs), "kept": len(examples), "drills": len(drill_examples),
                       "errors": {str(k): v / len(pairs) for k, v in corpus_errors.items()},
                       **corpus_statistics(task, pairs, checks, lexicon, tokenizer)},
            "mining": mining, "sft_losses": losses, "seconds": time.perf_counter() - t0, "torch": torch.__version__,
            "device": device, "threads": torch.get_num_threads(), "compiled": compiled}
    # write beside the final name, then rename: a killed run never leaves a half-written cache entry
    tmp = out.with_name(out.name + f".tmp{random.randrange(1 << 30)}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    lexicon.save(tmp / "lexicon.json")
    from hicra.fileio import write_json

    write_json(tmp / "warm_start.json", info)
    try:
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "warm_start.json").exists():  # not a finished warm start (only a rename makes one)
            raise _unfinished(out) from None
        # another process finished the same warm start first: keep theirs
    return out
