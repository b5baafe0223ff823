"""The lab's RL loop: one dataclass with every hyperparameter, one function that runs it (cleanrl style).

Per step:
  1. draw `prompts_per_step` problems, sample `group_size` responses each (batched, KV cache), keeping the
     behaviour log-probs and entropies of every token;
  2. reward each response with the task's exact checker (1 correct / 0 otherwise, with its error type);
  3. group advantages A_i = r_i - mean(r_group) (`hicra.algorithms.grpo_advantages`, scale "none" by default);
  4. token advantages by algorithm (all through `hicra.algorithms.hicra_advantages`, A + alpha*|A| on a mask):
       grpo          no mask: A on every token;
       hicra         the planning-token mask (lab lexicon, `PlanningTagger.token_masks`);
       high-entropy  the top `entropy_quantile` share of highest-entropy tokens of the batch (control);
       placebo       random tokens at this batch's planning-token rate (control);
       placebo-mass  random non-planning tokens carrying as much update mass |A|(1 - p) as this batch's planning
                     tokens (`hicra.algorithms.mass_matched_placebo_mask`; control);
       planning+entropy  planning tokens that are also high-entropy tokens;
       gated         the rule of the closed TRL PR #4997 (`hicra.algorithms.gated_mask`, control);
       phase-aware   the planning-token mask with alpha = 0 (plain GRPO) until the online consolidation detector
                     (`hicra.dynamics.online`, fed each step's execution, planning and reference-token
                     perplexities measured on its rollouts) says execution consolidated first, then `alpha`;
                     the detector's state is checkpointed;
  5. write the step's rollout rows (run-directory schema) atomically, then take the clipped policy-gradient
     update(s) (`hicra.algorithms.policy_loss`);
  6. every `checkpoint_every` steps save model, optimiser, every RNG state and the log, so `resume=True`
     continues exactly as an uninterrupted run with the same seed would have.

Nothing here schedules the dynamics: no step-dependent change of the loss, mask, alpha or sampling (phase-aware's
switch is decided by measurements of the rollouts, never by the step number).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# lab algorithm -> the amplification mask source it uses (hicra.algorithms.MASK_SOURCES); grpo amplifies nothing
MASK_SOURCE_OF = {"grpo": None, "hicra": "planning", "high-entropy": "high-entropy", "placebo": "placebo",
                  "placebo-mass": "placebo-mass", "phase-aware": "planning", "planning+entropy": "planning+entropy",
                  "gated": "gated"}
ALGORITHMS = tuple(MASK_SOURCE_OF)


@dataclass
class RLConfig:
    # algorithm
    algo: str = "hicra"
    alpha: float = 0.2  # HICRA amplification (also for the high-entropy and placebo controls)
    entropy_quantile: float = 0.2  # high-entropy: share of the batch's response tokens (HIGH_ENTROPY_QUANTILE)
    phase_detector: dict = field(default_factory=dict)  # phase-aware: OnlineConfig overrides
    adv_scale: str = "none"  # "none" (the paper's r - mean) or "std"
    # policy loss
    clip_low: float = 0.2
    clip_high: float = 0.28
    aggregation: str = "token-mean"
    kl_coef: float = 0.0  # reference = the warm-start model; 0 skips the reference pass
    # rollouts
    steps: int = 40
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 128
    temperature: float = 1.0
    # optimisation
    lr: float = 5e-4
    minibatches: int = 2  # gradient steps per rollout batch (the later ones are slightly off-policy)
    micro_batch_size: int = 16  # rows per forward/backward pass (length-sorted, trimmed); 0 = whole minibatch
    # leave rows whose every token advantage is 0 out of the forward/backward pass (e.g. GRPO groups whose rewards
    # are all equal: ~60% of the presets' response tokens); their loss and gradient are exactly 0 without a KL
    # term, so the update is the same and only the `loss/*` statistics change (they average the rows that were run)
    skip_zero_advantage: bool = True
    # the teacher-forced passes' batch layout (`hicra.lab.sampling.sequence_logprobs`): "split" (left-padded prompts,
    # attention mask) or "joined" (prompt and response contiguous, no mask; the same log-probs, faster)
    logprob_layout: str = "split"
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    # evaluation on a fixed held-out set (disjoint from training by construction): before and after RL, and
    # greedy accuracy + skill probes every `eval_every` steps (eval_curve.jsonl, probes.jsonl; 0 = never)
    n_eval: int = 256
    eval_every: int = 25
    n_probe: int = 64
    # held-out strategy entropy at both ends (`hicra.lab.probes.heldout_strategies`): this many responses per
    # held-out problem from the warm start and from the trained policy, and their change
    # (eval.json's `warm_start_strategies`, `final_strategies`, `strategy_change`); 0 = not measured
    strategy_k: int = 0
    # bookkeeping
    tasks: list[dict] = field(default_factory=lambda: [{"family": "series"}, {"family": "product"},
                                                       {"family": "multi"}])
    optimum: str = "diverse"  # task variant (must match the warm start's)
    heldout_share: float = 0.1
    lexicon: str = "warm-start"  # "warm-start": the lexicon mined and frozen with the warm start; else a preset/path
    snapshots: bool = True  # keep an HF model snapshot at step 0 and every checkpoint (checkpoints/step_NNNNNN/)
    seed: int = 0
    checkpoint_every: int = 10
    threads: int = 1  # tiny models on a shared CPU: one thread is fastest (measured 25x per decode step)
    tensorboard: bool = False

    def validate(self) -> None:
        for f in fields(self):  # each scalar field has its default's type (a run.json edited by hand, a JSON config)
            value, default = getattr(self, f.name), f.default
            if isinstance(default, bool):
                ok, kind = isinstance(value, bool), "true or false"
            elif isinstance(default, int):
                ok, kind = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**32, \
                    "a whole number below 2**32"
            elif isinstance(default, float):
                ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), \
                    "a finite number"
            elif isinstance(default, str):
                ok, kind = isinstance(value, str), "a string"
            else:
                continue
            if not ok:
                raise ValueError(f"{f.name} must be {kind}, got {value!r:.40}")
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, got {self.algo!r}")
        if not isinstance(self.tasks, list) or not all(isinstance(t, dict) for t in self.tasks):
            raise ValueError(f"tasks must be a list of task specs (objects), got {_short(self.tasks)}")
        from hicra.algorithms import check_option

        check_option("alpha", self.alpha)
        from hicra.lab.model import check_layout

        check_layout(self.logprob_layout, "logprob_layout")
        if self.group_size < 2:
            raise ValueError("group_size must be at least 2 (group advantages)")
        if self.steps < 0 or self.checkpoint_every < 1 or self.minibatches < 1 or self.eval_every < 0:
            raise ValueError("steps >= 0, checkpoint_every >= 1 and minibatches >= 1 are required")
        if self.strategy_k < 0:
            raise ValueError(f"strategy_k must be >= 0, got {self.strategy_k}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.seed < 2**32:  # numpy's seed range
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        if self.algo == "phase-aware":
            from hicra.dynamics.online import OnlineConfig

            OnlineConfig(**self.phase_detector).validate()


# why a run directory without checkpoints/last.pt cannot be resumed (`run_rl`, and `hicra lab` before any warm start)
NO_CHECKPOINT = "nothing to resume: no checkpoint (a run that stopped before its first one starts again in a new or " \
    "emptied directory)"
# RLConfig fields a resumed run may set anew (run longer, log to TensorBoard); every other field is the run's own
RESUME_MAY_CHANGE = ("steps", "tensorboard")


def config_from_record(recorded: dict, path: str | None = None) -> RLConfig:
    """The RLConfig a run recorded (run.json's `config`). Fields the record lacks (it was written before they
    existed) take their defaults, the values that kept the earlier behaviour. Raises InputError (naming `path` and
    the field) for a field the lab's RL config does not have or a value it refuses."""
    from dataclasses import fields

    from hicra.errors import InputError

    known = {f.name for f in fields(RLConfig)}
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise InputError("not a setting of the lab's RL config (a run of another trainer, or of a newer hicra?)",
                         path=path, field=f"config.{unknown[0]}")
    cfg = RLConfig(**recorded)
    try:
        cfg.validate()
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a valid lab RL config: {exc}", path=path, field="config") from None
    return cfg


def steps_problem(steps: int, done: int) -> str | None:
    """Why a resumed run cannot run to `steps` when its last checkpoint has `done` steps (None when it can)."""
    if steps < done:
        return f"cannot resume to {steps} steps: {done} are done (the last checkpoint)"
    return None


def steps_done(checkpoint: Path) -> int:
    """How many RL steps the checkpoint `checkpoints/last.pt` holds (its tensors are mapped, not read: the resume
    that follows reads them)."""
    return int(load_checkpoint(checkpoint, mmap=True)["step"]) + 1


def recorded_run(run_dir: Path) -> dict:
    """run.json of a lab run to resume, with its `config` (a dict) and `model` (the warm start's path, a string);
    InputError naming the file otherwise."""
    from hicra.dynamics.records import RUN_INFO, read_run_info
    from hicra.errors import InputError

    info = read_run_info(run_dir)
    for name, kind in (("config", dict), ("model", str)):
        if not isinstance(info.get(name), kind):
            raise InputError(f"nothing to resume: no lab run recorded here (a JSON {kind.__name__} expected)",
                             path=str(run_dir / RUN_INFO), field=name)
    return info


def _short(value, width: int = 60) -> str:
    """repr(value), cut to `width` characters (a task list would fill a line)."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def resume_conflict(cfg: RLConfig, recorded: dict) -> tuple[str, str] | None:
    """Why `cfg` cannot continue a run that recorded `recorded` (run.json's `config`): (field, "the run's R, given
    G") for the first field, other than `RESUME_MAY_CHANGE`, whose value differs; None when they agree. Values are
    compared as JSON writes them (tuples and lists alike); a field the record lacks counts as its default."""
    mine = json.loads(json.dumps(asdict(cfg)))
    theirs = json.loads(json.dumps(asdict(config_from_record(recorded))))
    for name, value in mine.items():
        if name not in RESUME_MAY_CHANGE and theirs[name] != value:
            return name, f"the run's {_short(theirs[name])}, given {_short(value)}"
    return None


def _check_resume(cfg: RLConfig, model_dir: str | Path, run_dir: Path) -> dict:
    """Refuse to continue the run in `run_dir` with settings or a warm start other than its own (run.json), so a
    resumed run is the run it continues. Returns run.json's contents as recorded."""
    from hicra.dynamics.records import RUN_INFO
    from hicra.errors import InputError

    path = str(run_dir / RUN_INFO)
    info = recorded_run(run_dir)
    conflict = resume_conflict(cfg, info["config"])
    if conflict:
        name, values = conflict
        raise InputError(f"cannot resume with another setting ({values}); only {' and '.join(RESUME_MAY_CHANGE)} "
                         "may change", path=path, field=f"config.{name}")
    if Path(info["model"]).name != Path(model_dir).name:
        raise InputError(f"cannot resume from another warm start (the run's {Path(info['model']).name}, given "
                         f"{Path(model_dir).name})", path=path, field="model")
    return info


def pad_masks(masks, width: int):
    """List of per-response numpy bool arrays -> bool tensor [B, width] (right padded with False)."""
    import torch

    out = torch.zeros((len(masks), width), dtype=torch.bool)
    for i, m in enumerate(masks):
        n = min(len(m), width)
        if n:
            out[i, :n] = torch.as_tensor(m[:n], dtype=torch.bool)
    return out


def micro_batches(rows, lengths, size: int) -> list:
    """`rows` (indices) sorted by response length (stable) and split into groups of `size`; 0 = one group."""
    import torch

    if size <= 0 or len(rows) <= size:
        return [rows]
    ordered = rows[torch.sort(lengths[rows], stable=True).indices]
    return list(ordered.split(size))


def gradient_rows(rows, token_advantages, kl_coef: float):
    """The rows of `rows` (index tensor) whose policy-gradient loss can have a non-zero gradient: with `kl_coef`
    0, those with a non-zero token advantage ([B, T] `token_advantages`); every row otherwise (the KL term pulls
    each token). A row whose advantages are all 0 has clipped surrogate -max(0 * r, 0 * clip(r)) = 0 at any ratio."""
    if kl_coef:
        return rows
    return rows[(token_advantages[rows] != 0).any(1)]


def token_advantages(cfg: RLConfig, adv, response_mask, planning_mask, entropies, generator, alpha=None,
                     logprobs=None):
    """[B, T] token advantages for the configured algorithm, and the mask that was amplified (None for grpo).
    The mask is `hicra.algorithms.amplification_mask` of the algorithm's source (`MASK_SOURCE_OF`); groups are
    `group_size` consecutive rows. `alpha` overrides cfg.alpha (phase-aware passes 0 until its detector fires);
    `logprobs` ([B, T] behaviour log-probs) are needed by placebo-mass only."""
    import torch

    from hicra.algorithms import amplification_mask, hicra_advantages

    alpha = cfg.alpha if alpha is None else alpha
    source = MASK_SOURCE_OF[cfg.algo]
    if source is None or (cfg.algo == "phase-aware" and alpha == 0.0):
        return adv[:, None].expand(response_mask.shape).clone(), None
    mask = amplification_mask(source, response_mask, planning_mask=planning_mask, entropies=entropies,
                              advantages=adv, group_ids=torch.arange(adv.shape[0]) // cfg.group_size,
                              entropy_quantile=cfg.entropy_quantile, generator=generator, logprobs=logprobs)
    return hicra_advantages(adv, mask, alpha) * response_mask.to(torch.float32), mask


def _rng_states(problem_rng: random.Random, sample_gen, mask_gen) -> dict:
    import numpy as np
    import torch

    return {"problem_rng": problem_rng.getstate(), "sample_gen": sample_gen.get_state(),
            "mask_gen": mask_gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _set_rng_states(states: dict, problem_rng: random.Random, sample_gen, mask_gen) -> None:
    import numpy as np
    import torch

    problem_rng.setstate(states["problem_rng"])
    sample_gen.set_state(states["sample_gen"])
    mask_gen.set_state(states["mask_gen"])
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(path: Path, model, opt, step: int, log: list[dict], rng: dict, detector=None) -> None:
    """model, optimiser, RNG states, the log so far and the phase detector's state (phase-aware), written
    atomically (temp file + rename)."""
    import torch

    from hicra.fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "log": log,
                    "rng": rng, "detector": None if detector is None else detector.state_dict()}, tmp)


def _snapshot(run_dir: Path, step: int, model, tokenizer) -> None:
    """An ordinary HF directory `checkpoints/step_NNNNNN/` of the weights after `step` steps (0: the warm start),
    for `hicra anchors` / `hicra graphs`."""
    from hicra.fileio import atomic_dir

    with atomic_dir(run_dir / "checkpoints" / f"step_{step:06d}") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _step_rows(path: Path) -> list[dict]:
    """The rows of a run's eval_curve.jsonl or probes.jsonl; InputError naming the file and row for a row that is
    not a JSON object with a whole-number `step`."""
    from hicra.errors import InputError
    from hicra.fileio import read_jsonl

    rows = []
    for line_no, row in read_jsonl(path, path.name):
        if isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
            raise InputError(f"each row needs a whole-number step, got {row.get('step')!r:.40}", path=str(path),
                             row=line_no, field="step")
        rows.append(row)
    return rows


def _forget_after(run_dir: Path, start: int, cfg: RLConfig, history: list[dict]) -> None:
    """On resume at step `start`, make the run directory what an uninterrupted run to `cfg.steps` holds at that
    point: the training log as the checkpoint has it (rows of undone steps go, also when no step is left to run),
    no evaluation point, probe row or snapshot off its grid at or after `start` (the final point of a shorter run,
    when a resume asks for more steps; a point on the grid is what a longer run also has), and no snapshot past
    `cfg.steps` (a resume that stops at the last checkpoint), and no temp folder of a save that was killed
    part-way (`atomic_dir`'s dot-named folders)."""
    from hicra.fileio import write_jsonl

    write_jsonl(run_dir / "train_log.jsonl", history)
    for name in ("eval_curve.jsonl", "probes.jsonl"):
        path = run_dir / name
        if path.exists():
            rows = _step_rows(path)
            keep = [r for r in rows if r["step"] < start or (cfg.eval_every and r["step"] % cfg.eval_every == 0)]
            if keep != rows:
                write_jsonl(path, keep)
    for litter in [*(run_dir / "checkpoints").glob(".step_*"), *run_dir.glob(".model.*")]:
        shutil.rmtree(litter, ignore_errors=True)
    for snap in (run_dir / "checkpoints").glob("step_*"):
        step = int(snap.name.split("_", 1)[1])
        if step > cfg.steps or (step >= start and step % cfg.checkpoint_every and step != cfg.steps):
            shutil.rmtree(snap)


def load_checkpoint(path: Path, mmap: bool = False) -> dict:
    """The dict `save_checkpoint` wrote; `mmap=True` maps the tensors instead of reading them. InputError (one
    line, naming the file) when it does not load (it is written atomically, so only outside damage does that)."""
    import pickle

    import torch

    from hicra.errors import InputError

    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        reason = " ".join(str(exc).split()).split(". ")[0][:120]
        raise InputError(f"damaged checkpoint, cannot resume from it ({type(exc).__name__}: {reason}); remove "
                         "the run's directory to run it again from the start", path=str(path)) from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise InputError("not a lab checkpoint (no integer 'step')", path=str(path))
    return state


def _evaluate_both(model, tokenizer, task, problems, cfg: RLConfig, name: str) -> dict:
    """Held-out accuracy and error rates with greedy decoding (`name`) and with one sample at the RL
    temperature (`name_sampled`, the policy RL optimises)."""
    import torch

    from hicra.lab.sft import evaluate

    # evaluation draws from its own generator, so it never shifts the RL streams
    with torch.random.fork_rng(devices=[]):
        return {name: evaluate(model, tokenizer, task, problems, cfg.max_new_tokens, seed=cfg.seed, greedy=True),
                f"{name}_sampled": evaluate(model, tokenizer, task, problems, cfg.max_new_tokens,
                                            seed=cfg.seed + 3, temperature=cfg.temperature)}


def _strategies(model, tokenizer, task, problems, cfg: RLConfig) -> dict:
    """`hicra.lab.probes.heldout_strategies` at the RL temperature, `cfg.strategy_k` responses per problem, from its
    own generator (seed `cfg.seed` + 5), so it never shifts the RL streams."""
    import torch

    from hicra.lab.probes import heldout_strategies

    with torch.random.fork_rng(devices=[]):
        return heldout_strategies(model, tokenizer, task, problems, cfg.strategy_k, cfg.temperature,
                                  cfg.max_new_tokens, seed=cfg.seed + 5)


def _eval_point(run_dir: Path, model, tokenizer, task, held_out, probe_set, cfg: RLConfig, step: int,
                greedy: dict | None = None) -> None:
    """Append the held-out greedy accuracy (`eval_curve.jsonl`) and the skill probes (`probes.jsonl`) after `step`
    updates; a resumed run rewrites the rows from `step` on, so each step appears once."""
    import torch

    from hicra.fileio import write_jsonl
    from hicra.lab.probes import run_probes
    from hicra.lab.sft import evaluate

    with torch.random.fork_rng(devices=[]):
        if greedy is None:
            greedy = evaluate(model, tokenizer, task, held_out, cfg.max_new_tokens, greedy=True)
        probes = run_probes(model, tokenizer, task, probe_set, cfg.max_new_tokens, step, cfg.temperature)
    for name, row in (("eval_curve.jsonl", {"step": step, **greedy}), ("probes.jsonl", probes)):
        path = run_dir / name
        rows = _step_rows(path) if path.exists() else []
        write_jsonl(path, [r for r in rows if r["step"] < step] + [row])


def run_rl(cfg: RLConfig, model_dir: str | Path, run_dir: str | Path, resume: bool = False,
           progress: bool = True, log=print, run_info: dict | None = None) -> dict:
    """Run (or resume) RL from the HF model directory `model_dir` into `run_dir`. Returns the final state:
    {"log": per-step metrics, "eval": {"warm_start": ..., "final": ...}, "run_dir": ..., "timings": [...]}.

    A run records `cfg`, the warm start and `run_info` (extra fields, e.g. the warm start's settings) in run.json.
    `resume=True` continues from the last checkpoint and raises InputError when `cfg` or `model_dir`'s name differs
    from the run's record (`resume_conflict`; TensorBoard logging and the steps may change, the steps not below
    those done). One process at a time writes a run directory (`hicra.fileio.dir_lock`): a second one started
    meanwhile is refused with InputError (before, two runs started into one directory both ended with exit 0, one
    of them lost or the two mixed)."""
    from hicra.errors import InputError
    from hicra.fileio import dir_lock

    if resume and not (Path(run_dir) / "checkpoints" / "last.pt").exists():  # before the lock makes the folder
        raise InputError(NO_CHECKPOINT, path=str(Path(run_dir) / "checkpoints" / "last.pt"))
    with dir_lock(run_dir):
        return _run_rl(cfg, model_dir, run_dir, resume, progress, log, run_info)


def _run_rl(cfg: RLConfig, model_dir: str | Path, run_dir: str | Path, resume: bool, progress: bool, log,
            run_info: dict | None) -> dict:
    """`run_rl`'s work, with the run directory locked."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.algorithms import gradient_mass, grpo_advantages, policy_loss
    from hicra.dynamics.records import RolloutWriter, list_rollout_files, rollout_row, write_run_info
    from hicra.dynamics.vocab import error_columns, loss_stats
    from hicra.errors import InputError
    from hicra.fileio import atomic_dir, read_json, write_json, write_jsonl
    from hicra.lab.model import format_prompt
    from hicra.lab.sampling import sample, sequence_logprobs
    from hicra.lab.sft import eval_problems
    from hicra.lab.tasks import TaskMix
    from hicra.planning.lexicon import Lexicon
    from hicra.planning.tagger import PlanningTagger

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoints" / "last.pt"  # present on resume: `run_rl` checked before the lock
    if not resume and (run_dir / "run.json").exists():
        raise InputError("run directory already holds a run (use --resume or another --out)", path=str(run_dir))

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.use_cache = True
    task = TaskMix(cfg.tasks, optimum=cfg.optimum, heldout_share=cfg.heldout_share)
    lexicon = Lexicon.load(Path(model_dir) / "lexicon.json") if cfg.lexicon == "warm-start" else \
        Lexicon.resolve(cfg.lexicon)
    tagger = PlanningTagger(lexicon, tokenizer)
    ref_model = None
    if cfg.kl_coef != 0.0:
        ref_model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    problem_rng = random.Random(cfg.seed)
    sample_gen = torch.Generator().manual_seed(cfg.seed + 1)
    mask_gen = torch.Generator().manual_seed(cfg.seed + 2)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    held_out = eval_problems(task, cfg.n_eval)  # the same problems for every seed and algorithm
    probe_set = held_out[: cfg.n_probe]
    detector = None
    if cfg.algo == "phase-aware":
        from hicra.dynamics.online import OnlineConfig, OnlineConsolidationDetector

        detector = OnlineConsolidationDetector(OnlineConfig(**cfg.phase_detector))

    history: list[dict] = []
    timings: list[dict] = []  # wall-clock figures: kept apart from the (deterministic) log
    start = 0
    eval_path = run_dir / "eval.json"
    if resume:
        info = _check_resume(cfg, model_dir, run_dir)
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        _set_rng_states(state["rng"], problem_rng, sample_gen, mask_gen)
        history = state["log"]
        start = state["step"] + 1
        problem = steps_problem(cfg.steps, start)
        if problem:
            raise InputError(problem, path=str(run_dir / "run.json"), field="config.steps")
        if detector is not None:
            detector.load_state_dict(state["detector"])
        # the run's other records are read before anything is rewritten, so a damaged one is named with nothing lost
        evals = read_json(eval_path, "eval.json") if eval_path.exists() else {}
        for name in ("eval_curve.jsonl", "probes.jsonl"):
            if (run_dir / name).exists():
                _step_rows(run_dir / name)
        # recorded once every part of the checkpoint has loaded: the steps, TensorBoard flag, the warm start's
        # current path and `run_info`, when any of them changed
        updated = {**info, "model": str(model_dir), "config": asdict(cfg), **(run_info or {})}
        if updated != info:
            write_run_info(run_dir, updated)
        # rollouts written after the checkpoint are redone (deterministically) by this run
        for file_step, _, path in list_rollout_files(run_dir):
            if file_step >= start:
                path.unlink()
        _forget_after(run_dir, start, cfg, history)
        log(f"resuming {run_dir} at step {start}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_dir(run_dir / "tokenizer") as tmp:
            tokenizer.save_pretrained(tmp)
        lexicon.save(run_dir / "lexicon.json")
        write_run_info(run_dir, {
            "algorithm": cfg.algo, "alpha": cfg.alpha if cfg.algo != "grpo" else 0.0, "seed": cfg.seed,
            "model": str(model_dir), "task": "+".join(t["family"] for t in cfg.tasks),
            "lexicon": "lexicon.json", "tokenizer": "tokenizer",  # relative to the run directory: it can move
            "config": asdict(cfg), **(run_info or {})})
        evals = {}
        if cfg.snapshots:  # the warm start as step 0, so the mechanistic verbs see where RL began
            _snapshot(run_dir, 0, model, tokenizer)
    if "warm_start" not in evals:
        evals.update(_evaluate_both(model, tokenizer, task, held_out, cfg, "warm_start"))
        evals["heldout_ids"] = [p.id for p in held_out]
        if cfg.strategy_k:
            evals["warm_start_strategies"] = _strategies(model, tokenizer, task, held_out, cfg)
        write_json(eval_path, evals)
        if cfg.eval_every:
            _eval_point(run_dir, model, tokenizer, task, held_out, probe_set, cfg, 0, evals["warm_start"])
        for mode, ws in (("greedy", evals["warm_start"]), ("sampled", evals["warm_start_sampled"])):
            log(f"warm-start policy ({mode}, {ws['n']} held-out problems): accuracy {ws['accuracy']:.1%}, "
                f"execution errors {ws['errors_execution_share']:.1%}, planning errors "
                f"{ws['errors_planning_share']:.1%}, format errors {ws['errors_format_share']:.1%}")

    tb = None
    if cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run's redone steps replace the events they had (else TensorBoard shows both)
            tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start if resume else None)
        except ImportError:
            log("tensorboard is not installed: skipping TensorBoard logging")

    writer = RolloutWriter(run_dir)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    bar = tqdm(range(start, cfg.steps), desc=f"RL ({cfg.algo})", disable=None if progress else True, initial=start,
               total=cfg.steps)
    for step in bar:
        t0 = time.perf_counter()
        problems = [task.sample(problem_rng, "train") for _ in range(cfg.prompts_per_step)]
        prompt_ids = [tokenizer(format_prompt(p.question))["input_ids"] for p in problems]
        batch_problems = [p for p in problems for _ in range(cfg.group_size)]
        s = sample(model, [ids for ids in prompt_ids for _ in range(cfg.group_size)], cfg.max_new_tokens, eos,
                   pad, generator=sample_gen, temperature=cfg.temperature)
        t_sample = time.perf_counter() - t0
        responses = s.response_lists()
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in responses]
        results = [task.check(p, t) for p, t in zip(batch_problems, texts, strict=True)]
        rewards = torch.tensor([r.reward for r in results], dtype=torch.float32)
        group_ids = [i // cfg.group_size for i in range(len(results))]
        adv = grpo_advantages(rewards, group_ids, scale=cfg.adv_scale)
        planning = tagger.token_masks(responses)
        planning_mask = pad_masks(planning, s.response_ids.shape[1])
        alpha = cfg.alpha
        if detector is not None:  # phase-aware: this step's measured class perplexities decide the switch
            from hicra.dynamics.online import class_perplexities

            detector.update(step, *class_perplexities(s.logprobs, s.response_mask, planning_mask, step))
            alpha = cfg.alpha if detector.fired else 0.0
        tok_adv, amplified = token_advantages(cfg, adv, s.response_mask, planning_mask, s.entropies, mask_gen,
                                              alpha=alpha, logprobs=s.logprobs)

        rows, drawn = [], Counter()
        for i, (p, ids, r) in enumerate(zip(batch_problems, responses, results, strict=True)):
            n = len(ids)
            # a problem drawn twice in a step: its second group continues the numbering, so (prompt_id, sample_idx)
            # stays unique in the step, as the records' contract has it (all its responses form one group there)
            sample_idx, drawn[p.id] = drawn[p.id], drawn[p.id] + 1
            rows.append(rollout_row(prompt_id=p.id, sample_idx=sample_idx, prompt=p.question,
                                    response=texts[i], token_ids=ids, logprobs=s.logprobs[i, :n],
                                    entropies=s.entropies[i, :n], planning_mask=planning[i][:n], reward=r.reward,
                                    correct=r.correct, truncated=bool(s.truncated[i]), error_type=r.error_type,
                                    strategy=r.strategy))
        writer.write_step(step, rows)

        # policy update: minibatches over whole groups' responses, in a fixed order
        model.train()
        bsz = len(results)
        order = torch.arange(bsz)
        stats_sum: dict[str, float] = {}
        stats_n: dict[str, int] = {}
        ref_lp = None
        if ref_model is not None:
            with torch.no_grad():
                ref_lp = sequence_logprobs(ref_model, s.prompt_ids, s.prompt_mask, s.response_ids,
                                           s.response_mask, cfg.temperature, layout=cfg.logprob_layout)
        lengths = s.response_mask.sum(1)
        for chunk in order.chunk(cfg.minibatches):
            # one optimiser step per minibatch; its loss is accumulated over length-sorted micro-batches trimmed
            # to their own longest response, weighted so the sum equals the minibatch's loss (less padding)
            n_tok, n_seq = int(s.response_mask[chunk].sum()), len(chunk)
            opt.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            weights: dict[str, float] = {}
            active = gradient_rows(chunk, tok_adv, cfg.kl_coef) if cfg.skip_zero_advantage else chunk
            if not len(active):  # every gradient is 0: give Adam zeros, as a full pass would
                for p in model.parameters():
                    p.grad = torch.zeros_like(p)
            for micro in micro_batches(active, lengths, cfg.micro_batch_size) if len(active) else []:
                t_len = int(lengths[micro].max())
                p_mask = s.prompt_mask[micro]
                p0 = int(p_mask.any(0).nonzero()[0])  # leading columns that are padding in every row
                r_mask = s.response_mask[micro, :t_len]
                logp = sequence_logprobs(model, s.prompt_ids[micro, p0:], p_mask[:, p0:],
                                         s.response_ids[micro, :t_len], r_mask, cfg.temperature,
                                         layout=cfg.logprob_layout)
                loss, stats = policy_loss(
                    logp, s.logprobs[micro, :t_len], tok_adv[micro, :t_len], r_mask, clip_low=cfg.clip_low,
                    clip_high=cfg.clip_high, aggregation=cfg.aggregation,
                    ref_logprobs=None if ref_lp is None else ref_lp[micro, :t_len], kl_coef=cfg.kl_coef,
                    planning_mask=planning_mask[micro, :t_len], max_response_length=cfg.max_new_tokens)
                w = int(r_mask.sum()) / n_tok if cfg.aggregation == "token-mean" else len(micro) / n_seq
                (loss * w).backward()
                for k, v in loss_stats(stats).items():
                    if v == v:  # a micro-batch without planning tokens has NaN planning stats: leave it out
                        sums[k] = sums.get(k, 0.0) + w * float(v)
                        weights[k] = weights.get(k, 0.0) + w
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sums["grad_norm"], weights["grad_norm"] = float(grad_norm), 1.0
            for k, v in sums.items():  # mean over the minibatches that ran the statistic
                stats_sum[k] = stats_sum.get(k, 0.0) + v / weights[k]
                stats_n[k] = stats_n.get(k, 0) + 1
        stats_sum = {k: v / stats_n[k] for k, v in stats_sum.items()}
        model.eval()

        n_tokens = int(s.response_mask.sum())
        errors = [r.error_type for r in results]
        # the mechanism check: planning tokens' share of the gradient mass and of the update (HICRA at alpha
        # changes the update by alpha times the latter), and how much this algorithm's mask did change it
        plan_mass = gradient_mass(s.logprobs, s.response_mask, planning_mask, adv, 0.0)
        own_change = 0.0 if amplified is None else gradient_mass(s.logprobs, s.response_mask, amplified, adv,
                                                                 alpha)["update_change"]
        resp_mask = s.response_mask
        entry = {
            "step": step, "reward": float(rewards.mean()), "accuracy": float(np.mean([r.correct for r in results])),
            **error_columns(errors), "mean_length": n_tokens / bsz,
            "truncated": float(s.truncated.float().mean()),
            "entropy": float((s.entropies * resp_mask).sum() / max(1, n_tokens)),
            "planning_ratio": float((planning_mask & resp_mask).sum()) / max(1, n_tokens),
            "amplified_ratio": 0.0 if amplified is None else float(amplified.sum()) / max(1, n_tokens),
            **({} if detector is None else {"phase_alpha": alpha, "phase_fired_step": detector.fired_step}),
            # NaN (e.g. no planning token in the batch) is written as null: JSON has no NaN
            **{k: (None if v != v else v) for k, v in {
                "planning_gradient_mass_share": plan_mass["gradient_mass_share"],
                "planning_update_share": plan_mass["update_share"], "update_change": own_change,
                **stats_sum}.items()},
        }
        dt = time.perf_counter() - t0
        history.append(entry)
        timing = {"step": step, "seconds": dt, "sample_seconds": t_sample, "tokens_per_s": n_tokens / dt}
        timings.append(timing)
        write_jsonl(run_dir / "train_log.jsonl", history)
        if tb is not None:
            for k, v in entry.items():
                if k != "step" and v is not None:  # null (NaN, e.g. no planning token this step) is no scalar
                    tb.add_scalar(f"lab/{k}", v, step)
            tb.add_scalar("lab/tokens_per_s", timing["tokens_per_s"], step)
        bar.set_postfix(reward=f"{entry['reward']:.2f}", acc=f"{entry['accuracy']:.2f}",
                        tok_s=f"{timing['tokens_per_s']:.0f}")
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:  # the last: below
            _eval_point(run_dir, model, tokenizer, task, held_out, probe_set, cfg, step + 1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            if cfg.snapshots:
                _snapshot(run_dir, step + 1, model, tokenizer)
            save_checkpoint(ckpt_path, model, opt, step, history,
                            _rng_states(problem_rng, sample_gen, mask_gen), detector=detector)
    bar.close()
    if tb is not None:
        tb.close()

    if "final" not in evals or resume:
        evals.update(_evaluate_both(model, tokenizer, task, held_out, cfg, "final"))
        if cfg.strategy_k:
            from hicra.lab.probes import heldout_strategy_change

            evals["final_strategies"] = _strategies(model, tokenizer, task, held_out, cfg)
            evals["strategy_change"] = heldout_strategy_change(evals["warm_start_strategies"],
                                                               evals["final_strategies"], seed=cfg.seed)
        write_json(eval_path, evals)
        if cfg.eval_every and cfg.steps > 0:  # the curve ends at the final weights (greedy decode reused)
            _eval_point(run_dir, model, tokenizer, task, held_out, probe_set, cfg, cfg.steps, evals["final"])
    with atomic_dir(run_dir / "model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {"log": history, "eval": evals, "run_dir": str(run_dir), "timings": timings}


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - exercised via subprocess in tests
    """`python -m hicra.lab.rl MODEL_DIR RUN_DIR [--resume] [--config JSON]`: RL only (the test harness)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hicra.lab.rl")
    parser.add_argument("model_dir")
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--config", default="{}", help="RLConfig fields as a JSON object")
    args = parser.parse_args(argv)
    cfg = RLConfig(**json.loads(args.config))
    run_rl(cfg, args.model_dir, args.run_dir, resume=args.resume, progress=False, log=lambda *a: None)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
