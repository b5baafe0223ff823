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

import re
import sys
import time
from pathlib import Path

from hicra.dynamics.records import run_file
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


def _tokenizer_dir(path: Path, run_dir: Path, run_info: dict) -> Path:
    named = run_info.get("tokenizer")
    candidates = [path, run_dir / "tokenizer", run_file(run_dir, named) if named else None]
    tok_dir = next((Path(c) for c in candidates if c and (Path(c) / "tokenizer_config.json").is_file()), None)
    if tok_dir is None:
        raise InputError("no tokenizer in the snapshot, at run.json's 'tokenizer' or in RUN_DIR/tokenizer",
                         path=str(path))
    return tok_dir


def check_snapshot(path: Path, run_dir: Path, run_info: dict) -> None:
    """Cheap checks of one snapshot folder, made for every selected step before any measuring (so a broken
    snapshot fails in seconds, not after the earlier steps were measured): config.json is a JSON object, a weights
    file is there (model.safetensors with a readable header, a sharded index whose shards exist, or
    pytorch_model.bin), and a tokenizer is found. Weights corrupted past the header are found when loading."""
    from hicra.fileio import read_json

    if not path.is_dir():
        raise InputError("not a folder", path=str(path))
    if not (path / "config.json").is_file():
        raise InputError("not a Hugging Face model folder (no config.json)", path=str(path))
    read_json(path / "config.json", "config.json")  # bad JSON or not an object: InputError
    single = path / "model.safetensors"
    index = next((path / n for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
                  if (path / n).is_file()), None)
    if single.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(single), "pt") as handle:  # reads the header only
                handle.keys()
        except (SafetensorError, OSError) as exc:
            raise InputError(f"corrupt model.safetensors: {str(exc).splitlines()[0]}", path=str(path)) from None
    elif index is not None:
        index_json = read_json(index, index.name)
        try:
            shards = set(index_json["weight_map"].values())
        except (KeyError, AttributeError, TypeError):  # no map, not a mapping, or unhashable file names
            raise InputError("no weight_map", path=str(index)) from None
        missing = sorted(s for s in shards if not (path / str(s)).is_file())
        if missing:
            raise InputError(f"weights shard {missing[0]} is missing", path=str(path))
    elif not (path / "pytorch_model.bin").is_file():
        raise InputError("no weights file (model.safetensors, pytorch_model.bin or a sharded index)",
                         path=str(path))
    _tokenizer_dir(path, run_dir, run_info)


def _check_snapshots(available: dict[int, Path], chosen: list[int], run_dir: Path, run_info: dict) -> None:
    for step in chosen:
        check_snapshot(available[step], run_dir, run_info)


def load_snapshot(path: Path, run_dir: Path, run_info: dict, device: str = "cpu"):
    """(model on `device`, tokenizer) of one snapshot; the tokenizer comes from the snapshot, else run.json's
    `tokenizer`, else `RUN_DIR/tokenizer`. A snapshot that fails to load (corrupt weights, ...) is an InputError
    naming its folder."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per snapshot load is noise (and would precede one-line errors)
    if not (path / "config.json").is_file():
        raise InputError("not a Hugging Face model folder (no config.json)", path=str(path))
    tok_dir = _tokenizer_dir(path, run_dir, run_info)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot load the snapshot: {first}", path=str(path)) from None
    model.to(device).eval()
    return model, tokenizer


def resolve_device(name: str) -> str:
    """The canonical name of torch device `name` ("cpu", "cuda", "cuda:1", ...); InputError on `--device` when it
    does not parse or is not available on this machine."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"not a torch device: {name!r}", field="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine", field="--device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"no CUDA device {dev.index} (this machine has {torch.cuda.device_count()})",
                         field="--device")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device type {dev.type!r} is not supported (cpu or cuda)", field="--device")
    return str(dev)


def run_tagger(run_dir: Path, run_info: dict):
    """A PlanningTagger for run.json's `lexicon` (`hicra.dynamics.analyze.run_lexicon`: the run directory's copy,
    the path as written, or a preset name)."""
    from hicra.dynamics.analyze import run_lexicon
    from hicra.planning import PlanningTagger

    name = run_info.get("lexicon")
    if not isinstance(name, str) or not name:
        raise InputError("missing (the run's lexicon names the planning class)", path=str(run_dir / "run.json"),
                         field="lexicon")
    return PlanningTagger(run_lexicon(run_dir, name))


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
    """The consolidation end and exploration onset from `hicra analyze`'s summary.json (None when unknown). A v1
    summary goes through `upgrade_phases`: v1 never tested the order, so its consolidation end is not used."""
    from hicra.dynamics.analyze import read_phases

    out = {"consolidation_end_step": None, "exploration_onset_step": None}
    try:
        phases = read_phases(run_dir)
    except InputError:  # an unreadable summary: the phases are unknown, the measurement goes on
        phases = None
    out.update({k: phases.get(k) for k in out} if phases else {})
    return out


def _run_config_number(run_dir: Path, config: dict, key: str, default, integer: bool, positive_only: bool):
    """run.json's config[key] (default when absent), checked: a number (an integer where `integer`), >= 1 for
    integers, > 0 otherwise; InputError naming run.json and the field."""
    if key not in config:
        return default
    value = config[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        value = int(value) if integer else float(value)
        ok = value >= 1 if integer else value > 0 and value == value and value != float("inf")
    if not ok:
        what = "an integer >= 1" if integer else "a number > 0"
        raise InputError(f"expected {what}, got {config[key]!r}", path=str(run_dir / "run.json"),
                         field=f"config.{key}")
    return value


def _sampling(run_dir: Path, config: dict, threads, max_new_tokens, temperature) -> tuple[int, int, float]:
    """(threads, max_new_tokens, temperature): the arguments, else the run config's (1 / 96 / 1.0 when absent).
    The run config's values are checked only where they are used."""
    for flag, value in (("--threads", threads), ("--max-new-tokens", max_new_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"must be an integer >= 1, got {value!r}", field=flag)
    if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise InputError(f"must be > 0, got {temperature!r}", field="--temperature")
    n_threads = threads or _run_config_number(run_dir, config, "threads", 1, True, True)
    max_new = max_new_tokens or _run_config_number(run_dir, config, "max_new_tokens", 96, True, True)
    temp = float(temperature) if temperature is not None else _run_config_number(run_dir, config, "temperature",
                                                                                   1.0, False, True)
    return n_threads, max_new, temp


def _setup(cfg, run_dir, steps, n, threads, max_new_tokens, temperature, device="cpu"):
    """Shared by both verbs: validate the settings, read the run, check every selected snapshot (before any
    measuring), set torch's threads, and resolve the sampling length and temperature from the arguments or the run
    config (96 / 1.0 / 1 thread when absent)."""
    import torch

    try:
        cfg.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    resolve_device(device)
    run_dir, info, available, chosen, task, problems, tagger, config = _context(run_dir, steps, n)
    n_threads, max_new, temp = _sampling(run_dir, config, threads, max_new_tokens, temperature)
    _check_snapshots(available, chosen, run_dir, info)
    torch.set_num_threads(n_threads)  # lab models: 1 thread is fastest
    return run_dir, info, available, chosen, task, problems, tagger, max_new, temp


def _warn_replaced(path: Path, chosen: list[int]) -> None:
    """Each call writes its outputs for the chosen steps only: say so on stderr (also under --quiet) when the file
    there holds other steps."""
    if not path.is_file():
        return
    import pyarrow.parquet as pq

    try:
        held = sorted(set(pq.read_table(path, columns=["step"]).column("step").to_pylist()))
    except Exception:  # an unreadable old file is replaced like any other  # noqa: BLE001
        return
    lost = [s for s in held if s not in chosen]
    if lost:
        print(f"note: {path} holds steps {lost} that this call does not measure; they will be replaced "
              f"(pass every step to --steps to keep them)", file=sys.stderr)


def run_anchors(run_dir, steps: list[int] | None = None, n: int = 32, cfg=None, max_new_tokens: int | None = None,
                temperature: float | None = None, batch_size: int = 256, n_boot: int = 2000, threads: int | None = None,
                progress: bool = True, log=print, device: str = "cpu") -> dict:
    """Counterfactual sentence importance at every selected checkpoint (`hicra anchors`); returns anchors.json's
    content. `max_new_tokens` / `temperature` / `threads` default to the run config's (96 / 1.0 / 1 when absent).
    `device`: where the model runs ("cuda" for real models); tokens are drawn on the CPU from the same seeds, so a
    device changes results only by float rounding of the forward passes."""
    import pyarrow as pa

    from hicra.fileio import write_bytes, write_json, write_parquet
    from hicra.mechanistic import anchors as A
    from hicra.mechanistic.policy import HFPolicy
    from hicra.mechanistic.report import anchors_figure, png, update_report

    cfg = cfg or A.AnchorsConfig()
    run_dir, info, available, chosen, task, problems, tagger, max_new, temp = _setup(
        cfg, run_dir, steps, n, threads, max_new_tokens, temperature, device)
    _warn_replaced(run_dir / "anchors.parquet", chosen)
    rows, per_step, costs = [], {}, {}
    for step in chosen:
        t0 = time.perf_counter()
        model, tokenizer = load_snapshot(available[step], run_dir, info, device)
        policy = HFPolicy(model, tokenizer, max_new, temp, batch_size, share_prompts=True)
        step_rows, stats = A.sentence_importance(policy, task, problems, tagger, cfg, progress=progress)
        rows += [{"step": step, **r} for r in step_rows]
        per_step[str(step)] = A.summarize_step(step_rows, n_boot=n_boot, level=cfg.level, seed=cfg.seed)
        costs[str(step)] = {**stats, "tokens_sampled": policy.tokens_sampled, "seconds": time.perf_counter() - t0}
        s, x = per_step[str(step)]["abs_importance"], per_step[str(step)]["excess_abs_importance"]
        log(f"anchors step {step}: {stats['sentences']} sentences ({per_step[str(step)]['n_fixed']} fixed), "
            f"mean |importance| planning {_f(s['planning']['mean'])}, execution {_f(s['execution']['mean'])}, "
            f"excess |importance| planning {_f(x['planning']['mean'])}, execution {_f(x['execution']['mean'])}; "
            f"{stats['draws']} continuations in {costs[str(step)]['seconds']:.1f}s")
    schema = pa.schema([("step", pa.int32()), ("problem_id", pa.string()), ("sentence_idx", pa.int32()),
                        ("class", pa.string()), ("importance", pa.float64()), ("tv_distance", pa.float64()),
                        ("n_resamples", pa.int32()), ("n_keep", pa.int32()), ("n_tries", pa.int32()),
                        ("fixed", pa.bool_()), ("acc_keep", pa.float64()), ("acc_resampled", pa.float64()),
                        ("sentence", pa.string())])
    write_parquet(run_dir / "anchors.parquet", pa.Table.from_pylist(rows, schema=schema))
    phases = _phase_steps(run_dir)
    result = {"settings": _settings("anchors", cfg, len(problems), max_new, temp, batch_size, n_boot, info, device),
              "rows_sha256": _sha256(run_dir / "anchors.parquet"), **phases, "steps": per_step,
              "by_phase": A.by_phase(rows, phases["consolidation_end_step"], n_boot=n_boot, level=cfg.level,
                                     seed=cfg.seed),
              "cost": costs}
    write_json(run_dir / "anchors.json", result)
    write_bytes(run_dir / "anchors.png", png(anchors_figure(result)))
    update_report(run_dir)
    return result


def run_graphs(run_dir, steps: list[int] | None = None, n: int = 32, cfg=None, max_new_tokens: int | None = None,
               temperature: float | None = None, batch_size: int = 256, n_boot: int = 2000,
               threads: int | None = None, progress: bool = True, log=print, device: str = "cpu") -> dict:
    """Reasoning graphs at every selected checkpoint (`hicra graphs`); returns graphs.json's content. `device` as
    for `run_anchors`. InputError (one line) when scikit-learn or networkx is missing, before any sampling."""
    import importlib.util

    import pyarrow as pa

    missing = [m for m in ("sklearn", "networkx") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"hicra graphs needs {' and '.join(missing)}: pip install 'hicra[mechanistic]'")
    from tqdm.auto import tqdm

    from hicra.fileio import write_bytes, write_json, write_parquet
    from hicra.mechanistic import graphs as G
    from hicra.mechanistic.policy import HFPolicy
    from hicra.mechanistic.report import graphs_figure, png, update_report

    cfg = cfg or G.GraphsConfig()
    run_dir, info, available, chosen, task, problems, tagger, max_new, temp = _setup(
        cfg, run_dir, steps, n, threads, max_new_tokens, temperature, device)
    _warn_replaced(run_dir / "graphs.parquet", chosen)
    rows, per_step, costs = [], {}, {}
    for step in chosen:  # before any work: the layer must exist in every snapshot
        _check_layer(available[step], cfg.layer)
    for step in tqdm(chosen, desc="graphs", unit="checkpoint", disable=None if progress else True, leave=False):
        t0 = time.perf_counter()
        model, tokenizer = load_snapshot(available[step], run_dir, info, device)
        policy = HFPolicy(model, tokenizer, max_new, temp, batch_size)
        step_rows, ginfo = G.reasoning_graphs(policy, task, problems, tagger, cfg)
        rows += [{"step": step, **r} for r in step_rows]
        per_step[str(step)] = G.summarize_step(step_rows, ginfo, n_boot=n_boot, seed=cfg.seed)
        costs[str(step)] = {**ginfo["seconds"], "total": time.perf_counter() - t0}
        s = per_step[str(step)]
        log(f"graphs step {step}: {s['n_responses']} responses, cycles {_f(s['cycles']['mean'])}, diameter "
            f"{_f(s['diameter']['mean'])}, small-world {_f(s['small_world'])}"
            + (" [{}, {}]".format(*map(_f, s["small_world_interval"])) if s.get("small_world_interval") else "")
            + (f" ({s['small_world_null_reason']})" if s["small_world"] is None else ""))
    schema = pa.schema([("step", pa.int32()), ("response_id", pa.string()), ("problem_id", pa.string()),
                        ("n_sentences", pa.int32()), ("n_nodes", pa.int32()), ("cycles", pa.int32()),
                        ("diameter", pa.int32()), ("small_world", pa.float64()), ("correct", pa.bool_()),
                        ("backtracking", pa.int32()), ("walk", pa.list_(pa.int32()))])
    write_parquet(run_dir / "graphs.parquet", pa.Table.from_pylist(rows, schema=schema))
    result = {"settings": _settings("graphs", cfg, len(problems), max_new, temp, batch_size, n_boot, info, device),
              "rows_sha256": _sha256(run_dir / "graphs.parquet"), **_phase_steps(run_dir), "steps": per_step,
              "cost": costs}
    write_json(run_dir / "graphs.json", result)
    write_bytes(run_dir / "graphs.png", png(graphs_figure(result)))
    update_report(run_dir)
    return result


def _sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes: VERB.json records its VERB.parquet's, so a pair split by a stopped run (the
    rows written, the summary not) is not reused as one (`stored_settings_mismatch`)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _settings(verb: str, cfg, n_problems: int, max_new: int, temp: float, batch_size: int, n_boot: int,
              info: dict, device: str = "cpu") -> dict:
    """The `settings` of anchors.json / graphs.json: what the rows were measured with."""
    if verb == "anchors":
        from hicra.mechanistic.anchors import config_dict
    else:
        from hicra.mechanistic.graphs import config_dict
    out = {**config_dict(cfg), "n_problems": n_problems, "max_new_tokens": max_new, "temperature": temp,
           "sample_batch_size": batch_size, "n_boot": n_boot, "device": resolve_device(device)}
    if verb == "anchors":
        out["lexicon"] = info.get("lexicon")
    return out


# Settings that do not change the rows of the parquet files: the bootstrap size (summaries only) and the graphs'
# hidden-state forward batch (padding only; `test_sentence_end_states_match_a_single_forward`).
_SUMMARY_ONLY = {"anchors": ("n_boot",), "graphs": ("n_boot", "batch_size")}


def stored_settings_mismatch(run_dir, verb: str, steps: list[int] | None, n: int, cfg=None,
                             max_new_tokens: int | None = None, temperature: float | None = None,
                             batch_size: int = 256, n_boot: int = 2000, device: str = "cpu") -> list[str]:
    """How the outputs `run_anchors` / `run_graphs` (`verb`) stored in `run_dir` differ from what these arguments
    would measure: a list of "name stored -> requested" lines, empty when the stored rows can be reused. Missing or
    unreadable outputs give one line saying so. Settings an older output did not record are not compared."""
    from hicra.fileio import read_json

    run_dir = Path(run_dir)
    if verb == "anchors":
        from hicra.mechanistic.anchors import AnchorsConfig as Config
    elif verb == "graphs":
        from hicra.mechanistic.graphs import GraphsConfig as Config
    else:
        raise ValueError(f"verb must be 'anchors' or 'graphs', got {verb!r}")
    cfg = cfg or Config()
    try:
        if not (run_dir / f"{verb}.parquet").is_file():
            raise ValueError
        stored = read_json(run_dir / f"{verb}.json", f"{verb}.json")
        stored_settings, stored_steps = stored["settings"], sorted(int(s) for s in stored["steps"])
        if not isinstance(stored_settings, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):  # InputError is a ValueError
        return [f"no readable {verb}.parquet and {verb}.json"]
    recorded = stored.get("rows_sha256")  # absent in outputs from before session 55
    if recorded is not None and recorded != _sha256(run_dir / f"{verb}.parquet"):
        return [f"{verb}.parquet is not the one {verb}.json describes (a run stopped between writing the two?)"]
    info = read_run_info(run_dir)
    chosen = select_steps(checkpoint_steps(run_dir), steps)
    _, problems = lab_heldout_problems(run_dir, info)
    _, max_new, temp = _sampling(run_dir, info.get("config", {}), 1, max_new_tokens, temperature)
    wanted = _settings(verb, cfg, len(problems[:n]), max_new, temp, batch_size, n_boot, info, device)
    diff = [f"steps {stored_steps} -> {chosen}"] if stored_steps != chosen else []
    for key, value in wanted.items():
        if key in _SUMMARY_ONLY[verb] or key not in stored_settings:
            continue
        if stored_settings[key] != value:
            diff.append(f"{key} {stored_settings[key]} -> {value}")
    return diff


def _check_layer(path: Path, layer: int) -> None:
    from hicra.fileio import read_json

    config = read_json(path / "config.json", "config.json")
    try:
        layers = int(config["num_hidden_layers"])
    except (ValueError, KeyError, TypeError):
        raise InputError("no integer num_hidden_layers", path=str(path / "config.json")) from None
    if not -(layers + 1) <= layer <= layers:
        raise InputError(f"layer {layer} out of range for a {layers}-layer model (0 = embeddings, {layers} or -1 = "
                         "last)", field="--layer")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"
