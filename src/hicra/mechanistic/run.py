"""Walking a run directory: model snapshots at `checkpoints/step_NNNNNN/`, the held-out problems, the outputs.

`run_anchors(run_dir, ...)` and `run_graphs(run_dir, ...)` measure every selected checkpoint and write, atomically,
into the run directory:
- anchors.parquet (one row per sentence, `hicra.mechanistic.anchors.COLUMNS`), anchors.json (settings, per-step
  summaries with intervals, costs), anchors.png;
- graphs.parquet (one row per response, `hicra.mechanistic.graphs.COLUMNS`), graphs.json, graphs.png;
and splice their sections into report.html (`hicra.mechanistic.report`). Each file holds the steps of the latest
invocation. Bad input raises `InputError` (the CLI prints one line, exit 2).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from hicra.errors import InputError
from hicra.mechanistic.tasks import lab_heldout_problems, read_run_info

_STEP_DIR = re.compile(r"step_(\d{6,})")


def checkpoint_steps(run_dir: str | Path) -> dict[int, Path]:
    """{step: folder} of the model snapshots `RUN_DIR/checkpoints/step_NNNNNN/` (files there, such as the lab's
    resumable `last.pt`, are not snapshots; a folder named `step_*` that does not parse is an error)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        raise InputError("no checkpoints/ folder (model snapshots are read from checkpoints/step_NNNNNN/)",
                         path=str(run_dir))
    found: dict[int, Path] = {}
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or not entry.name.startswith("step_"):
            continue
        m = _STEP_DIR.fullmatch(entry.name)
        if m is None:
            raise InputError("checkpoint folder is not named step_NNNNNN", path=str(entry))
        found[int(m.group(1))] = entry
    if not found:
        raise InputError("no model snapshots (checkpoints/step_NNNNNN/ folders)", path=str(folder))
    return found


def select_steps(available: dict[int, Path], steps: list[int] | None) -> list[int]:
    """The requested steps (all when None), each of which must have a snapshot."""
    if not steps:
        return sorted(available)
    missing = [s for s in steps if s not in available]
    if missing:
        raise InputError(f"no snapshot for step {missing[0]} (available: {', '.join(map(str, sorted(available)))})",
                         field="--steps")
    return sorted(set(steps))


def load_snapshot(path: Path, run_dir: Path, run_info: dict):
    """(model, tokenizer) of one snapshot; the tokenizer comes from the snapshot, else run.json's `tokenizer`,
    else `RUN_DIR/tokenizer`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per snapshot load is noise (and would precede one-line errors)
    if not (path / "config.json").is_file():
        raise InputError("not a Hugging Face model folder (no config.json)", path=str(path))
    candidates = [path, run_info.get("tokenizer"), run_dir / "tokenizer"]
    tok_dir = next((Path(c) for c in candidates if c and (Path(c) / "tokenizer_config.json").is_file()), None)
    if tok_dir is None:
        raise InputError("no tokenizer in the snapshot, at run.json's 'tokenizer' or in RUN_DIR/tokenizer",
                         path=str(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the snapshot: {str(exc).splitlines()[0]}", path=str(path)) from None
    model.eval()
    return model, tokenizer


def run_tagger(run_dir: Path, run_info: dict):
    """A PlanningTagger for run.json's `lexicon` (preset name or a file, relative paths from the run directory)."""
    from hicra.planning import Lexicon, PlanningTagger

    name = run_info.get("lexicon")
    if not isinstance(name, str) or not name:
        raise InputError("missing (the run's lexicon names the planning class)", path=str(run_dir / "run.json"),
                         field="lexicon")
    local = run_dir / name
    return PlanningTagger(Lexicon.resolve(local if local.is_file() else name))


def _context(run_dir, steps, n: int):
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if n < 1:
        raise InputError(f"must be >= 1, got {n}", field="--n")
    available = checkpoint_steps(run_dir)
    chosen = select_steps(available, steps)
    task, problems = lab_heldout_problems(run_dir, info)
    if not problems:
        raise InputError("the run has no held-out problems", path=str(run_dir))
    tagger = run_tagger(run_dir, info)
    config = info.get("config", {})
    return run_dir, info, available, chosen, task, problems[:n], tagger, config


def _phase_steps(run_dir: Path) -> dict:
    """The consolidation end and exploration onset from `hicra analyze`'s summary.json (None when unknown)."""
    out = {"consolidation_end_step": None, "exploration_onset_step": None}
    path = run_dir / "summary.json"
    if path.is_file():
        try:
            phases = json.loads(path.read_text(encoding="utf-8")).get("phases", {})
            out.update({k: phases.get(k) for k in out})
        except (ValueError, AttributeError):
            pass
    return out


def _setup(cfg, run_dir, steps, n, threads, max_new_tokens, temperature):
    """Shared by both verbs: validate the settings, read the run, set torch's threads, and resolve the sampling
    length and temperature from the arguments or the run config (96 / 1.0 / 1 thread when absent)."""
    import torch

    try:
        cfg.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    run_dir, info, available, chosen, task, problems, tagger, config = _context(run_dir, steps, n)
    torch.set_num_threads(int(threads or config.get("threads", 1)))  # lab models: 1 thread is fastest
    max_new = int(max_new_tokens or config.get("max_new_tokens", 96))
    temp = float(temperature if temperature is not None else config.get("temperature", 1.0))
    return run_dir, info, available, chosen, task, problems, tagger, max_new, temp


def run_anchors(run_dir, steps: list[int] | None = None, n: int = 32, cfg=None, max_new_tokens: int | None = None,
                temperature: float | None = None, batch_size: int = 256, n_boot: int = 2000, threads: int | None = None,
                progress: bool = True, log=print) -> dict:
    """Counterfactual sentence importance at every selected checkpoint (`hicra anchors`); returns anchors.json's
    content. `max_new_tokens` / `temperature` / `threads` default to the run config's (96 / 1.0 / 1 when absent)."""
    import pyarrow as pa

    from hicra.fileio import write_bytes, write_json, write_parquet
    from hicra.mechanistic import anchors as A
    from hicra.mechanistic.policy import HFPolicy
    from hicra.mechanistic.report import anchors_figure, png, update_report

    cfg = cfg or A.AnchorsConfig()
    run_dir, info, available, chosen, task, problems, tagger, max_new, temp = _setup(
        cfg, run_dir, steps, n, threads, max_new_tokens, temperature)
    rows, per_step, costs = [], {}, {}
    for step in chosen:
        t0 = time.perf_counter()
        model, tokenizer = load_snapshot(available[step], run_dir, info)
        policy = HFPolicy(model, tokenizer, max_new, temp, batch_size, share_prompts=True)
        step_rows, stats = A.sentence_importance(policy, task, problems, tagger, cfg, progress=progress)
        rows += [{"step": step, **r} for r in step_rows]
        per_step[str(step)] = A.summarize_step(step_rows, n_boot=n_boot, level=cfg.level, seed=cfg.seed)
        costs[str(step)] = {**stats, "tokens_sampled": policy.tokens_sampled, "seconds": time.perf_counter() - t0}
        s = per_step[str(step)]["abs_importance"]
        log(f"anchors step {step}: {stats['sentences']} sentences ({per_step[str(step)]['n_fixed']} fixed), "
            f"mean |importance| planning {_f(s['planning']['mean'])}, execution {_f(s['execution']['mean'])}; "
            f"{stats['draws']} continuations in {costs[str(step)]['seconds']:.1f}s")
    schema = pa.schema([("step", pa.int32()), ("problem_id", pa.string()), ("sentence_idx", pa.int32()),
                        ("class", pa.string()), ("importance", pa.float64()), ("tv_distance", pa.float64()),
                        ("n_resamples", pa.int32()), ("n_keep", pa.int32()), ("n_tries", pa.int32()),
                        ("fixed", pa.bool_()), ("acc_keep", pa.float64()), ("acc_resampled", pa.float64()),
                        ("sentence", pa.string())])
    write_parquet(run_dir / "anchors.parquet", pa.Table.from_pylist(rows, schema=schema))
    phases = _phase_steps(run_dir)
    result = {"settings": {**A.config_dict(cfg), "n_problems": len(problems), "max_new_tokens": max_new,
                           "temperature": temp, "n_boot": n_boot, "lexicon": info.get("lexicon")},
              **phases, "steps": per_step,
              "by_phase": A.by_phase(rows, phases["consolidation_end_step"], n_boot=n_boot, level=cfg.level,
                                     seed=cfg.seed),
              "cost": costs}
    write_json(run_dir / "anchors.json", result)
    write_bytes(run_dir / "anchors.png", png(anchors_figure(result)))
    update_report(run_dir)
    return result


def run_graphs(run_dir, steps: list[int] | None = None, n: int = 32, cfg=None, max_new_tokens: int | None = None,
               temperature: float | None = None, batch_size: int = 256, n_boot: int = 2000,
               threads: int | None = None, progress: bool = True, log=print) -> dict:
    """Reasoning graphs at every selected checkpoint (`hicra graphs`); returns graphs.json's content."""
    import pyarrow as pa
    from tqdm.auto import tqdm

    from hicra.fileio import write_bytes, write_json, write_parquet
    from hicra.mechanistic import graphs as G
    from hicra.mechanistic.policy import HFPolicy
    from hicra.mechanistic.report import graphs_figure, png, update_report

    cfg = cfg or G.GraphsConfig()
    run_dir, info, available, chosen, task, problems, tagger, max_new, temp = _setup(
        cfg, run_dir, steps, n, threads, max_new_tokens, temperature)
    rows, per_step, costs = [], {}, {}
    for step in chosen:  # before any work: the layer must exist in every snapshot
        _check_layer(available[step], cfg.layer)
    for step in tqdm(chosen, desc="graphs", unit="checkpoint", disable=not progress, leave=False):
        t0 = time.perf_counter()
        model, tokenizer = load_snapshot(available[step], run_dir, info)
        policy = HFPolicy(model, tokenizer, max_new, temp, batch_size)
        step_rows, ginfo = G.reasoning_graphs(policy, task, problems, tagger, cfg)
        rows += [{"step": step, **r} for r in step_rows]
        per_step[str(step)] = G.summarize_step(step_rows, ginfo, n_boot=n_boot, seed=cfg.seed)
        costs[str(step)] = {**ginfo["seconds"], "total": time.perf_counter() - t0}
        s = per_step[str(step)]
        log(f"graphs step {step}: {s['n_responses']} responses, cycles {_f(s['cycles']['mean'])}, diameter "
            f"{_f(s['diameter']['mean'])}, small-world {_f(s['small_world'])}"
            + (f" ({s['small_world_null_reason']})" if s["small_world"] is None else ""))
    schema = pa.schema([("step", pa.int32()), ("response_id", pa.string()), ("problem_id", pa.string()),
                        ("n_sentences", pa.int32()), ("n_nodes", pa.int32()), ("cycles", pa.int32()),
                        ("diameter", pa.int32()), ("small_world", pa.float64()), ("correct", pa.bool_()),
                        ("backtracking", pa.int32()), ("walk", pa.list_(pa.int32()))])
    write_parquet(run_dir / "graphs.parquet", pa.Table.from_pylist(rows, schema=schema))
    result = {"settings": {**G.config_dict(cfg), "n_problems": len(problems), "max_new_tokens": max_new,
                           "temperature": temp, "n_boot": n_boot},
              **_phase_steps(run_dir), "steps": per_step, "cost": costs}
    write_json(run_dir / "graphs.json", result)
    write_bytes(run_dir / "graphs.png", png(graphs_figure(result)))
    update_report(run_dir)
    return result


def _check_layer(path: Path, layer: int) -> None:
    from hicra.fileio import read_text

    try:
        layers = int(json.loads(read_text(path / "config.json", "config.json"))["num_hidden_layers"])
    except (ValueError, KeyError, TypeError):
        raise InputError("no integer num_hidden_layers", path=str(path / "config.json")) from None
    if not -(layers + 1) <= layer <= layers:
        raise InputError(f"layer {layer} out of range for a {layers}-layer model (0 = embeddings, {layers} or -1 = "
                         "last)", field="--layer")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"
