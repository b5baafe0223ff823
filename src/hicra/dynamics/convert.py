"""Convert foreign logs into a run directory: a JSONL of responses with correctness labels -> one step per model
or checkpoint.

Two row shapes are read:

* flat: ``{"prompt": ..., "response": ..., "correct": true, "model": "ckpt-100", ...}``: one response per line;
  the step is the value of ``--step-field`` (default "model"; "step" or "checkpoint" work the same), steps
  numbered in order of first appearance (or numerically when every value is an integer);
* nested (GSM8K's ``model_solutions.jsonl``): ``{"question": ..., "6b_finetuning": {"is_correct": false,
  "solution": ...}, "175b_verification": {...}}``: every key whose value is an object holding a response field
  and a correctness field is a model, one step per model in order of first appearance.

Field names: response from ``response``/``solution``/``completion``, correctness from ``correct``/``is_correct``,
prompt from ``prompt``/``question``/``problem``; prompt ids from ``prompt_id``/``id``, else the line number.

Tokens: the files carry no token ids. With ``--tokenizer DIR`` (a local Hugging Face tokenizer) responses are
tokenized with it; without, a **regex word proxy** is used: a token is a run of word characters or one
punctuation character (``\\w+|[^\\w\\s]``, whitespace dropped), ids assigned in order of first appearance. Planning
masks follow the project rule (a token is planning iff its character span overlaps a strategic-gram occurrence
found by `PlanningTagger.char_spans`). Log-probabilities and entropies are unknown and left null, so the
analyzer reports perplexity, token entropy and fork-token overlap as unavailable rather than inventing them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from hicra.dynamics.records import RolloutWriter, list_rollout_files, rollout_row, write_run_info
from hicra.errors import InputError
from hicra.fileio import load_tokenizer, read_jsonl
from hicra.planning.metrics import WORD_PROXY
from hicra.planning.tagger import PlanningTagger, overlap_mask

RESPONSE_FIELDS = ("response", "solution", "completion")
CORRECT_FIELDS = ("correct", "is_correct")
PROMPT_FIELDS = ("prompt", "question", "problem")
ID_FIELDS = ("prompt_id", "id")


def _first(obj: dict, names) -> str | None:
    for name in names:
        if name in obj:
            return name
    return None


class _Tokens:
    """Token ids + planning mask for a text: the tagger's own (HF tokenizer offsets) or the regex proxy."""

    def __init__(self, tagger):
        self.tagger = tagger
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str) -> tuple[list[int], np.ndarray]:
        if self.tagger.tokenizer is not None:
            return self.tagger.encode(text)
        matches = list(WORD_PROXY.finditer(text))
        ids = [self.vocab.setdefault(m.group(), len(self.vocab)) for m in matches]
        offsets = np.asarray([m.span() for m in matches], dtype=np.int64).reshape(-1, 2)
        spans = self.tagger.char_spans(text)
        return ids, overlap_mask(offsets[:, 0], offsets[:, 1], spans[:, 0], spans[:, 1])


def _as_bool(value, path, line_no, field) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InputError(f"correctness must be true/false, got {value!r}", path=str(path), row=line_no, field=field)


def convert_responses(path: str | os.PathLike, out_dir: str | os.PathLike, *, lexicon="paper", tokenizer=None,
                      step_field: str = "model", models: list[str] | None = None, limit: int | None = None,
                      progress: bool = False) -> dict:
    """Convert a responses JSONL into a run directory; returns {"steps": {step: name}, "rows": {name: n}}."""
    from tqdm import tqdm

    path, out_dir = Path(path), Path(out_dir)
    if (out_dir / "rollouts").is_dir() and list_rollout_files(out_dir):
        # old step files would stay next to the new ones and be analysed as part of this run
        raise InputError("already holds a run's rollouts; convert into a new folder", path=str(out_dir),
                         field="out")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer)
    tagger = PlanningTagger(lexicon, tokenizer)
    tokens = _Tokens(tagger)
    by_model: dict[str, list[dict]] = {}
    n_lines = 0
    for line_no, obj in tqdm(read_jsonl(path), desc="convert", unit="line", disable=not progress):
        if limit is not None and n_lines >= limit:
            break
        n_lines += 1
        pf = _first(obj, PROMPT_FIELDS)
        idf = _first(obj, ID_FIELDS)
        prompt = obj.get(pf) if pf else None
        prompt_id = str(obj[idf]) if idf else str(line_no)
        entries = []
        rf, cf = _first(obj, RESPONSE_FIELDS), _first(obj, CORRECT_FIELDS)
        if rf is not None:  # flat row
            if cf is None:
                raise InputError("missing correctness label (correct / is_correct)", path=str(path),
                                 row=line_no, field="correct")
            name = str(obj.get(step_field, "responses"))
            entries.append((name, obj, rf, cf))
        else:  # nested: one object per model
            for key, value in obj.items():
                if isinstance(value, dict):
                    vrf, vcf = _first(value, RESPONSE_FIELDS), _first(value, CORRECT_FIELDS)
                    if vrf is not None and vcf is not None:
                        entries.append((key, value, vrf, vcf))
            if not entries:
                raise InputError("no response found (need a response/solution field, or per-model objects "
                                 "holding one and a correct/is_correct label)", path=str(path), row=line_no)
        for name, entry, rf_, cf_ in entries:
            if models and name not in models:
                continue
            text = entry[rf_]
            if not isinstance(text, str):
                raise InputError("response must be a string", path=str(path), row=line_no, field=rf_)
            ids, mask = tokens(text)
            group = by_model.setdefault(name, [])
            group.append({
                "prompt_id": prompt_id, "sample_idx": 0, "prompt": prompt if isinstance(prompt, str) else None,
                "response": text, "token_ids": ids, "planning_mask": mask,
                "correct": _as_bool(entry[cf_], path, line_no, cf_),
                "error_type": entry.get("error_type"),
            })
    if not by_model:
        raise InputError("no responses to convert", path=str(path))
    names = list(by_model)
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        names.sort(key=int)
    writer = RolloutWriter(out_dir)
    steps = {}
    for step, name in enumerate(names):
        rows = by_model[name]
        # several responses of one prompt within a step are samples of one group
        seen: dict[str, int] = {}
        for row in rows:
            row["sample_idx"] = seen.get(row["prompt_id"], 0)
            seen[row["prompt_id"]] = row["sample_idx"] + 1
            row["reward"] = 1.0 if row["correct"] else 0.0
        writer.write_step(step, [rollout_row(**row) for row in rows])
        steps[step] = name
    tok_desc = (getattr(tokenizer, "name_or_path", None) or "tokenizer") if tokenizer is not None else \
        "regex word proxy \\w+|[^\\w\\s]"
    write_run_info(out_dir, {
        "run_id": out_dir.resolve().name, "algorithm": "converted", "alpha": None, "seed": None,
        "model": ", ".join(names), "task": path.name,
        "lexicon": tagger.lexicon.name if not isinstance(lexicon, (str, os.PathLike)) else
        str(Path(lexicon).resolve()) if Path(lexicon).is_file() else str(lexicon),
        "config": {"source": str(path), "steps": {str(k): v for k, v in steps.items()},
                   "tokens": tok_desc, "logprobs": "unavailable", "entropies": "unavailable"},
    })
    return {"steps": steps, "rows": {n: len(r) for n, r in by_model.items()}}
