"""`hicra train --config cfg.yaml`: GRPO / HICRA / controls with TRL on any local Hugging Face causal LM.

Config (YAML; see examples/trl_lab_cpu.yaml and examples/trl_qwen2.5_math_1.5b.yaml):

    model: DIR | "lab:1m"          a local model directory, or "lab:SIZE" to build a fresh tiny lab model
    trainer: hicra                 hicra | grpo | trl-grpo.  grpo = the baseline arm: HICRATrainer with alpha = 0,
                                   which is TRL's GRPO update exactly and still writes the rollout log;
                                   trl-grpo = TRL's own GRPOTrainer (GRPOConfig defaults, no rollout log)
    data:                          one of three sources
      bench: gsm8k                 a named benchmark of `hicra.evaluation.BENCHMARKS` (reward: math-verify)
      path: FILE.jsonl             any JSONL, with problem_field / answer_field / id_field /
                                   answer_from (field | gsm8k | boxed | list), or fields: BENCH to copy a field map
      lab: [{family: product}]     lab task families (reward and error types from the exact checkers), with n
      limit: 256                   first N problems;  data_dir: ../shared/data;  seed: 0 (lab sampling)
      prompt_template: "{problem}\\nPlease reason step by step, ... within \\\\boxed{{}}."  (str.format:
                                   {problem} is the problem, literal braces are doubled)
    args:                          HICRAConfig fields (TRL's GRPOConfig fields plus alpha, lexicon, mask_source,
      output_dir: runs/x           entropy_quantile, placebo_rate, log_rollouts, log_token_stats, run_dir, ...)

`--set KEY=VALUE` overrides a config entry (dotted keys, YAML values), e.g. `--set args.alpha=0`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hicra.errors import InputError
from hicra.fileio import atomic_dir, load_causal_lm, load_tokenizer, read_yaml

TRAINERS = ("hicra", "grpo", "trl-grpo")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train with TRL (GRPO, HICRA, controls) from a YAML config",
                              description=__doc__.split("\n\n", 1)[1], formatter_class=_raw())
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="training config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry (dotted key, YAML value); repeatable")
    p.set_defaults(func=run)


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path=str(path))
    cfg = read_yaml(path, "config") or {}
    if not isinstance(cfg, dict):
        raise InputError("the config must be a mapping", path=str(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set needs KEY=VALUE, got {item!r}", field="set")
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"cannot set {key!r}: {part!r} is not a mapping", field="set")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"bad YAML value in {item!r}: {getattr(exc, 'problem', None) or exc}",
                             field="set") from None
    for required in ("model", "data"):
        if required not in cfg:
            raise InputError("missing", path=str(path), field=required)
    if cfg.get("trainer", "hicra") not in TRAINERS:
        raise InputError(f"must be one of {TRAINERS}", path=str(path), field="trainer")
    _check_types(cfg, str(path))
    cfg["_path"] = str(path)
    return cfg


# config entries that must be text when given (a number, list or null there failed deep inside with a traceback)
TEXT_FIELDS = ("model", "data.bench", "data.path", "data.prompt_template", "data.fields", "data.data_dir",
               "data.problem_field", "data.answer_field", "data.id_field", "data.answer_from",
               "args.output_dir", "args.run_dir", "args.lexicon", "args.mask_source")
# config entries that must be whole numbers when given, with their least value (a string there was a traceback,
# and 0, -1 or 2.5 as a limit had silently taken 1 or 3 problems)
WHOLE_FIELDS = {"data.limit": 1, "data.n": 1, "data.seed": 0}


def _check_types(cfg: dict, path: str) -> None:
    """InputError naming the config and the field when an entry of `TEXT_FIELDS` is present but not a string, one of
    `WHOLE_FIELDS` is not a whole number at or above its least value, or `model` is `lab:SIZE` with an unknown
    size."""
    from hicra.lab.model import SIZES

    for dotted in TEXT_FIELDS:
        value, present = cfg, True
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                present = False
                break
            value = value[part]
        if present and not isinstance(value, str):
            raise InputError(f"must be a string, got {type(value).__name__} {value!r:.60}", path=path, field=dotted)
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    for dotted, least in WHOLE_FIELDS.items():
        value = data.get(dotted.split(".", 1)[1])
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise InputError(f"must be a whole number >= {least}, got {value!r:.60}", path=path, field=dotted)
    if cfg["model"].startswith("lab:") and lab_size(cfg["model"]) not in SIZES:
        raise InputError(f"unknown lab model size {lab_size(cfg['model'])!r}; known: {', '.join(SIZES)}", path=path,
                         field="model")


def lab_size(spec: str) -> str:
    """The size of a `lab:SIZE` model spec ("lab:" alone is 1m)."""
    return spec.split(":", 1)[1] or "1m"


# ---------------------------------------------------------------------------------------------------------------
# data and rewards


def math_rows(data: dict, config_path: str) -> list[dict]:
    """Rows {prompt, answer, id} from a named benchmark or a JSONL with a field map (hicra.evaluation)."""
    from hicra import evaluation as ev

    template = data.get("prompt_template", ev.DEFAULT_PROMPT)
    limit = data.get("limit")
    if "bench" in data:
        items = ev.load_benchmark(data["bench"], data.get("data_dir"), limit)
    else:
        path = Path(data["path"])
        if not path.is_absolute() and not path.exists():  # relative to the config file
            path = Path(config_path).parent / path
        if "fields" in data:
            base = ev.BENCHMARKS.get(data["fields"])
            if base is None:
                raise InputError(f"unknown field map {data['fields']!r}", path=config_path, field="data.fields")
            spec = dataclasses.replace(base, path=str(path))
        else:
            spec = ev.jsonl_spec(path, problem=data.get("problem_field", "problem"),
                                 answer=data.get("answer_field", "answer"), id=data.get("id_field", "id"),
                                 answer_from=data.get("answer_from", "field"))
        items = ev.load_benchmark(path.stem, limit=limit, spec=spec)
    try:
        return [{"prompt": template.format(problem=it["problem"]), "answer": it["answer"], "id": it["id"]}
                for it in items]  # a row without a gold answer is an InputError in load_benchmark
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"bad template ({exc!r}); use {{problem}} and double literal braces",
                         path=config_path, field="data.prompt_template") from None


def math_reward():
    """TRL reward function: 1.0 when math-verify judges the completion's final answer equal to `answer`."""
    from hicra.evaluation import Grader

    grader = Grader()

    def math_verify_reward(completions, answer, **kwargs):
        from hicra.integrations.trl import _text

        return [1.0 if grader(_text(c), a) else 0.0 for c, a in zip(completions, answer, strict=True)]

    return math_verify_reward


def lab_rows(data: dict, path: str | None = None) -> tuple[list[dict], Any]:
    """`n` (or `limit`, default 256) lab problems drawn with `seed` from the task mix `data.lab` (one task spec or a
    list of them, as `hicra.lab.tasks.TaskMix` takes). A spec the mix refuses, or a non-integer `n`/`seed`, is an
    InputError naming `path` and the field."""
    import random

    from hicra.lab.model import format_prompt
    from hicra.lab.tasks import TaskMix

    specs = data["lab"] if isinstance(data["lab"], list) else [data["lab"]]
    try:
        mix = TaskMix(specs)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InputError(f"not a lab task mix ({exc})", path=path, field="data.lab") from None
    try:
        rng = random.Random(int(data.get("seed", 0)))
        n = int(data.get("n", data.get("limit", 256)))
    except (TypeError, ValueError) as exc:
        raise InputError(f"n, limit and seed must be integers ({exc})", path=path, field="data") from None
    rows = []
    for _ in range(n):
        try:
            p = mix.sample(rng)
        except (TypeError, ValueError, KeyError) as exc:  # a setting of the right name and the wrong type
            raise InputError(f"cannot draw a problem ({exc})", path=path, field="data.lab") from None
        rows.append({"prompt": format_prompt(p.question), "id": p.id, "family": p.family, "question": p.question,
                     "answer": str(p.answer), "problem_data": json.dumps(p.data)})
    return rows, mix


def _problem(row: dict):
    from hicra.lab.tasks import Problem

    return Problem(id=row["id"], family=row["family"], question=row["question"], answer=int(row["answer"]),
                   data=json.loads(row["problem_data"]))


def lab_reward(mix):
    def lab_task_reward(completions, id, family, question, answer, problem_data, **kwargs):  # noqa: A002
        from hicra.integrations.trl import _text

        rows = [dict(id=i, family=f, question=q, answer=a, problem_data=d)
                for i, f, q, a, d in zip(id, family, question, answer, problem_data, strict=True)]
        return [float(mix.check(_problem(r), _text(c)).reward) for r, c in zip(rows, completions, strict=True)]

    def annotate(row: dict, completion: str) -> dict:
        result = mix.check(_problem(row), completion)
        return {"correct": bool(result.correct), "error_type": result.error_type}

    return lab_task_reward, annotate


# ---------------------------------------------------------------------------------------------------------------
# model


def resolve_model(spec: str, rows: list[dict], out_dir: Path, config_path: str | None = None) -> Path:
    """A model directory; "lab:SIZE" builds a fresh tiny lab model (tokenizer trained on the prompts + lexicon).
    Anything else that is not a directory is an InputError naming `config_path` and the field `model`."""
    if not isinstance(spec, str):
        raise InputError(f"must be a model directory or 'lab:SIZE', got {type(spec).__name__} {spec!r:.60}",
                         path=config_path, field="model")
    if spec.startswith("lab:"):
        from hicra.lab.model import build_model, train_tokenizer
        from hicra.planning import Lexicon

        size = lab_size(spec)
        texts = [r["prompt"] + r.get("answer", "") for r in rows] + list(Lexicon.preset("lab").texts) * 20
        tok = train_tokenizer(texts)
        path = out_dir / "model_init"
        with atomic_dir(path) as tmp:
            tok.save_pretrained(tmp)
            build_model(tok, size=size).save_pretrained(tmp)
        return path
    path = Path(spec)
    if not path.is_dir():
        raise InputError("model directory not found (or use 'lab:1m')", path=str(path), field="model")
    return path


def build_trainer(cfg: dict):
    """(trainer, run_dir) from a loaded config dict."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from hicra.integrations.trl import HICRAConfig, HICRATrainer

    data = cfg["data"]
    if not isinstance(data, dict):
        raise InputError("must be a mapping", path=cfg["_path"], field="data")
    if "lab" in data:
        rows, mix = lab_rows(data, cfg["_path"])
        reward, annotate = lab_reward(mix)
        task = "lab:" + ",".join(t.family for t in mix.tasks)
    elif "bench" in data or "path" in data:
        rows, reward, annotate = math_rows(data, cfg["_path"]), math_reward(), None
        task = data.get("bench") or str(data["path"])
    else:
        raise InputError("needs one of bench, path, lab", path=cfg["_path"], field="data")
    if not rows:
        raise InputError("no training problems", path=cfg["_path"], field="data")
    if not isinstance(cfg.get("args") or {}, dict):
        raise InputError("must be a mapping of HICRAConfig fields", path=cfg["_path"], field="args")
    args = dict(cfg.get("args") or {})
    args.setdefault("output_dir", "runs/train")
    out_dir = Path(args["output_dir"])
    kind = cfg.get("trainer", "hicra")
    if kind == "grpo":  # HICRATrainer with alpha = 0 is exactly TRL's GRPO update (tested) and keeps the rollout log
        args["alpha"] = 0.0
    try:
        if kind in ("hicra", "grpo"):
            targs = HICRAConfig(**args)
        else:
            hicra_only = set(HICRAConfig.__dataclass_fields__) - set(GRPOConfig.__dataclass_fields__)
            targs = GRPOConfig(**{k: v for k, v in args.items() if k not in hicra_only})
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), path=cfg["_path"], field="args") from None
    # the model only after every setting has been checked: a bad one is refused before any model is built
    fresh = not out_dir.exists()  # made here: removed again if TRL refuses a setting below
    model_dir = resolve_model(cfg["model"], rows, out_dir, cfg["_path"])
    tokenizer = load_tokenizer(model_dir, field="model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_causal_lm(model_dir)
    common = dict(model=model, reward_funcs=reward, args=targs, train_dataset=Dataset.from_list(rows),
                  processing_class=tokenizer)
    try:
        trainer = HICRATrainer(**common, annotate=annotate) if kind in ("hicra", "grpo") else GRPOTrainer(**common)
    except (TypeError, ValueError) as exc:  # a setting of the wrong type that TRL meets only here
        if fresh:
            import shutil

            shutil.rmtree(out_dir, ignore_errors=True)
        raise InputError(" ".join(str(exc).split()), path=cfg["_path"], field="args") from None
    if kind in ("hicra", "grpo"):
        if trainer.rollout_logger is not None:
            trainer.rollout_logger.run_info.update(task=task, model=str(cfg["model"]))
            trainer.rollout_logger.run_info["config"]["train_config"] = {k: v for k, v in cfg.items()
                                                                         if k != "_path"}
    return trainer


def run(args) -> int:
    cfg = load_config(args.config, args.set)
    trainer = build_trainer(cfg)
    trainer.train()
    out = Path(trainer.args.output_dir)
    if trainer.accelerator.num_processes > 1:  # every process takes part in the save: one folder, in place
        trainer.save_model(str(out / "final"))
    else:
        with atomic_dir(out / "final") as tmp:
            trainer.save_model(str(tmp))
    print(json.dumps({"output_dir": str(out), "steps": trainer.state.global_step,
                      "run_dir": str(getattr(trainer.args, "run_dir", None) or out)}))
    return 0
