"""Convert foreign logs into a run directory: responses with correctness labels -> one step per model, checkpoint
or training step.

Inputs: JSONL or Parquet files, or folders of them (read in natural name order: `2.jsonl` before `10.jsonl`). Two
row shapes are read:

* flat: ``{"prompt": ..., "response": ..., "correct": true, "model": "ckpt-100", ...}``: one response per row;
  the step is the value of the step field: the one named (`step_field` or a preset), else the first of "model",
  "step" and "checkpoint" that the rows hold. A named step field must be in every row (InputError naming the row
  otherwise); a found one is in every row or none holds one (then all rows are one step, "responses"), and rows
  that hold different ones are an InputError;
* nested (GSM8K's ``model_solutions.jsonl``): ``{"question": ..., "6b_finetuning": {"is_correct": false,
  "solution": ...}, "175b_verification": {...}}``: every key whose value is an object holding a response field
  and a correctness field is a model, one step per model.

Step order (`step_order`, the rule used is returned and written to run.json's ``config.step_order``):

1. ``numeric``: every step value is a number, or a string reading as one (``100``, ``50.0``, ``"1e3"``): sorted
   by value. Two names of one value (``100`` and ``100.0``) raise InputError.
2. ``numbers in the names``: the names are one text with numbers in it, the text the same for all
   (``ckpt-50``, ``ckpt-100``; ``global_step_50/actor``): sorted by those numbers, left to right, as integers.
   Two names with the same numbers (``ckpt-05``, ``ckpt-5``) raise InputError.
3. ``first appearance``: anything else (model names such as ``6b_finetuning``): the order in which the names first
   appear in the input.

The steps of the run directory are the indices 0, 1, ... of that order, not the original values: the analysis
treats checkpoints as evenly spaced, whatever training steps they were taken at (``config.steps`` maps each index
to its name; `hicra analyze` copies it into a ``source_step`` column of the metrics).

Field names (flat rows): given with `response_field`, `correct_field`, `prompt_field`, `id_field`, `step_field`, or
a preset (`PRESETS`: verl's rollout dump, TRL's completions log); otherwise found among response/solution/completion,
correct/is_correct, prompt/question/problem and prompt_id/id. A field name may hold ``{step}``, filled with the row's
step value (``{step}_correct`` reads ``500_correct`` on a row whose step is 500). Correctness is the correct field
(true/false, 0/1 or the strings "true"/"false"), or with `reward_threshold` a score: correct iff
``score >= reward_threshold``. The reward column is the score when a score field is named (every row must then
hold a finite number there that a float32 can hold), else 1/0.
`response_after`: the response is what follows the first line that reads exactly this text in the response field
(a chat transcript "system ... user ... assistant"). Chat-message lists (TRL's conversational prompts and
completions) are joined into text: "role\ncontent" per message for prompts; for completions what the model wrote,
its assistant messages' reasoning (`reasoning_content`, where a chat template's response schema put the `<think>`
text), content and tool calls (as JSON), not a tool's replies.

Presets. verl: the legacy trainer's dumps carry the reward function's `acc`; the v1 trainer's (verl 0.9.1's default)
carry none, so give `--reward-threshold` (the score is then thresholded). A rollout dump folder and a validation
dump folder are two runs: convert them apart. TRL: its log holds the last generation batch at each logging step,
so a batch that serves several optimizer steps (`num_iterations` above 1, or more optimizer steps per generation) is
logged at each of them: a step whose rows equal the previous step's is kept and returned in "repeated", for the
caller to say (greedy decoding can give equal steps too). A row whose score is NaN (that reward function returned
None) has no verdict and is left out (returned in "unscored"); with `--score-field` other than `accuracy_reward`
the threshold must be given, and a named `--correct-field` replaces the thresholded score. TRL's log keeps the last
completions of training and evaluation alike, so with evaluation during training a step's file can hold evaluation
completions: convert the log of a run without it (the command points at steps whose group size differs, which shows
them only where `num_generations_eval` differs from `num_generations`).

Groups: rows with the same prompt id in a step are samples of one group. The prompt id is the id field when there
is one, else the first 12 hex digits of the SHA-1 of the prompt text (so samples of one prompt group together, and
the same prompt has the same id at every step), else the line number.

Errors: bad input raises `InputError` (the CLI: one line, exit code 2) naming the file, the row and the field. Rows
count from 1: a JSONL row is its line number, written ``FILE:N``; a Parquet row is written ``FILE, row N
(1-based)``, as `hicra analyze` names a row of a rollout file.

Tokens: the files carry no token ids. With ``--tokenizer DIR`` (a local Hugging Face tokenizer) responses are
tokenized with it; without, a **regex word proxy** is used: a token is a run of word characters or one
punctuation character (``\\w+|[^\\w\\s]``, whitespace dropped), ids assigned in order of first appearance. Planning
masks follow the project rule (a token is planning iff its character span overlaps a strategic-gram occurrence
found by `PlanningTagger.mask_spans`, overlapping occurrences included). Log-probabilities and entropies are unknown
and left null, so the analyzer reports perplexity, token entropy and fork-token overlap as unavailable rather than
inventing them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from itertools import chain
from pathlib import Path

import numpy as np

from hicra.dynamics.records import (
    REWARD_MAX,
    RolloutWriter,
    list_rollout_files,
    rollout_path,
    rollout_row,
    write_run_info,
)
from hicra.errors import InputError, location
from hicra.fileio import load_tokenizer, read_correctness, read_jsonl
from hicra.planning.metrics import WORD_PROXY
from hicra.planning.tagger import PlanningTagger, overlap_mask

RESPONSE_FIELDS = ("response", "solution", "completion")
CORRECT_FIELDS = ("correct", "is_correct")
PROMPT_FIELDS = ("prompt", "question", "problem")
ID_FIELDS = ("prompt_id", "id")
STEP_FIELDS = ("model", "step", "checkpoint")  # looked for when no step field is named (a run's rows use one)

# preset -> field map. verl: `trainer.rollout_data_dir` / `validation_data_dir` files `{step}.jsonl` written by
# `RayPPOTrainer._write_generations` (input, output, gts, score, step, and the reward function's extra keys, e.g.
# `acc`). TRL: `OUTPUT_DIR/completions/completions_{step:05d}.parquet` written by `GRPOTrainer` with
# `log_completions=True` (step, prompt, completion, one column per reward function, advantage); TRL logs no
# correctness, so a reward column is thresholded (its built-in `accuracy_reward` gives 1.0 when correct).
PRESETS: dict[str, dict] = {
    "verl": {"response_field": "output", "prompt_field": "input", "step_field": "step", "correct_field": "acc",
             "score_field": "score"},
    "trl": {"response_field": "completion", "prompt_field": "prompt", "step_field": "step",
            "score_field": "accuracy_reward", "reward_threshold": 1.0},
}


NO_ERROR_LABELS = ("", "none", "null", "correct", "ok")  # read as "no error type" (null)


def _error_type(value, path: Path, line_no: int) -> str | None:
    """A row's `error_type` in the run-directory vocabulary (`hicra.dynamics.vocab.ERROR_TYPES`): the label in any
    case and outer spaces; null for a missing one or one meaning "no error" (`NO_ERROR_LABELS`). Any other value is
    an InputError naming the input file, line and field (it would be counted nowhere)."""
    from hicra.dynamics.vocab import ERROR_TYPES

    if value is None:
        return None
    label = str(value).strip().lower() if isinstance(value, str) else None
    if label in NO_ERROR_LABELS:
        return None
    if label not in ERROR_TYPES:
        raise InputError(f"error type {value!r} is none of {', '.join(ERROR_TYPES)} (or null, \"\", \"none\", "
                         "\"correct\"): relabel or drop the field", **_at(path, line_no), field="error_type")
    return label


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

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(token ids (n,) int32, planning mask (n,) bool) of `text`."""
        if self.tagger.tokenizer is not None:
            ids, mask = self.tagger.encode(text)
            return np.asarray(ids, dtype=np.int32), mask
        matches = list(WORD_PROXY.finditer(text))
        vocab = self.vocab
        # int32 arrays, not lists of Python ints: a large log is held in memory until its steps are ordered
        ids = np.fromiter((vocab.setdefault(m.group(), len(vocab)) for m in matches), np.int32, len(matches))
        offsets = np.fromiter(chain.from_iterable(m.span() for m in matches), np.int64, 2 * len(matches))
        spans = self.tagger.mask_spans(text)
        return ids, overlap_mask(offsets[0::2], offsets[1::2], spans[:, 0], spans[:, 1])


def _at(path: Path, line_no: int) -> dict:
    """InputError's location arguments for row `line_no` (from 1) of an input file: a line of a JSONL file, a row
    of a Parquet file (`hicra.errors.location`)."""
    return {"path": str(path), "row": line_no, "table_row": Path(path).suffix == ".parquet"}


def _where(path: Path, line_no: int) -> str:
    """The same location as text, for a message that names a second row."""
    return location(**_at(path, line_no))


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _as_number(value) -> float | None:
    """A step value as a finite number (int, float or a string reading as one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float: a name, not a number
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _non_finite_text(text: str) -> bool:
    """Whether a string reads as a non-finite float ("NaN", "inf", "-Infinity")."""
    try:
        return not math.isfinite(float(text.strip()))
    except ValueError:
        return False


def _sorted_unambiguous(names: list[str], keys: dict, clash: str, field: str | None,
                        where: Mapping[str, tuple] | None = None) -> list[str]:
    """`names` sorted by `keys[name]`; InputError (`clash` formatted with the two names) when two share a key. With
    `where` (name -> (file, row, field) of the name's first row) the error is located at the later name's first row
    and names the earlier one's."""
    seen: dict = {}
    for n in names:
        if keys[n] in seen:
            first = seen[keys[n]]
            message = clash.format(first, n)
            if where and n in where and first in where:
                path, row, name_field = where[n]
                raise InputError(f"{message} ({first!r} at {_where(*where[first][:2])}): the order of the "
                                 "checkpoints would be ambiguous", **_at(path, row), field=name_field)
            raise InputError(message + ": the order of the checkpoints would be ambiguous", field=field)
        seen[keys[n]] = n
    return sorted(names, key=keys.__getitem__)


def step_order(names: list[str], values: dict[str, object], field: str | None = None,
               where: Mapping[str, tuple] | None = None) -> tuple[list[str], str]:
    """(names in step order, the rule used) for the step names in order of first appearance; `values` maps each
    name to the step value it came from (a number or a string). Rules, tried in turn (module docstring): "numeric",
    "numbers in the names", "first appearance". InputError when two names are the same number or carry the same
    numbers: located at the later name's first row and naming the earlier one's, given `where` (name -> (file,
    row, field) of its first row), else naming only `field`."""
    if len(names) < 2:
        return list(names), "one step"
    numbers = {n: _as_number(values.get(n, n)) for n in names}
    if all(v is not None for v in numbers.values()):
        return (_sorted_unambiguous(names, numbers, "step values {!r} and {!r} are the same number", field, where),
                "numeric")
    parts = {n: re.split(r"(\d+)", n) for n in names}
    texts = {tuple(p[0::2]) for p in parts.values()}
    if len(texts) == 1 and len(next(iter(texts))) > 1:  # one text, at least one number in it
        keys = {n: tuple(int(d) for d in p[1::2]) for n, p in parts.items()}
        return (_sorted_unambiguous(names, keys, "step names {!r} and {!r} carry the same numbers", field, where),
                "numbers in the names")
    return list(names), "first appearance"


def input_files(paths, skipped: list[Path] | None = None) -> list[Path]:
    """The files to read: each path as is, a folder as its .jsonl and .parquet files (any case: `.JSONL`) in natural
    name order, not its subfolders. What a folder holds besides them (hidden names aside) is appended to
    `skipped`, for the caller to say."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            entries = sorted((f for f in p.iterdir() if not f.name.startswith(".")), key=_natural_key)
            found = [f for f in entries if f.is_file() and f.suffix.lower() in (".jsonl", ".parquet")]
            if skipped is not None:
                skipped += [f for f in entries if f not in found]
            if not found:
                raise InputError("no .jsonl or .parquet files in this folder", path=str(p))
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError("no such file or folder", path=str(p))
    return files


def _count_rows(files: list[Path]) -> int | None:
    """The number of rows of the input files, for a progress bar: a JSONL file's non-blank lines (read as bytes, a
    block at a time), a Parquet file's row count from its footer; None when a file cannot be read (the conversion
    then says why)."""
    import pyarrow.parquet as pq

    total = 0
    try:
        for path in files:
            if path.suffix.lower() == ".parquet":
                total += pq.ParquetFile(path).metadata.num_rows
                continue
            with open(path, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
    except Exception:  # noqa: BLE001 - only a progress bar's total depends on it
        return None
    return total


def _read_rows(path: Path, on_unfinished=None) -> Iterator[tuple[int, dict]]:
    """(row number, row) of a JSONL or Parquet file (row numbers from 1, as lines); `on_unfinished`: `read_jsonl`'s
    (a JSONL file's unfinished last line)."""
    if path.suffix.lower() != ".parquet":
        yield from read_jsonl(path, on_unfinished=on_unfinished)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"unreadable Parquet file ({exc})", path=str(path)) from None
    n = 0
    batches = reader.iter_batches(batch_size=1024)
    while True:
        try:  # a damaged data page fails here, at the batch that holds it
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"unreadable Parquet data after row {n} ({exc})", path=str(path)) from None
        for row in batch.to_pylist():
            n += 1
            yield n, row


# roles of a completion's messages that the model did not write (a tool's or environment's replies); any other role,
# or none, is the model's ("assistant", "model", ...)
OTHER_ROLES = ("tool", "function", "ipython", "environment", "user", "system")


def _content_text(content) -> str:
    """A message's content as text: a string as it is, content blocks as their text blocks joined, else ""."""
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content if isinstance(content, str) else "" if content is None else str(content)


def _message_text(value, role_prefix: bool):
    """A chat-message list as text (None if `value` is not one). A prompt (`role_prefix`): "role\ncontent" per
    message. A completion: what the model wrote, its messages of any role but `OTHER_ROLES` (a tool's output is not
    the model's text; a message without a role is the model's): each message's reasoning (`reasoning_content`, where a chat template's response schema moved the
    `<think>` text; or `reasoning`/`thinking`), then its content, then its tool calls as JSON."""
    if not (isinstance(value, list) and value and all(isinstance(m, dict) and ("content" in m or "role" in m)
                                                      for m in value)):
        return None
    parts = []
    for m in value:
        if role_prefix:
            parts.append(f"{m.get('role', '')}\n{_content_text(m.get('content'))}")
            continue
        if str(m.get("role") or "assistant").lower() in OTHER_ROLES:
            continue
        reasoning = next((m[k] for k in ("reasoning_content", "reasoning", "thinking") if m.get(k)), None)
        calls = m.get("tool_calls") or []
        calls = [calls] if isinstance(calls, (str, dict)) else calls
        text = [_content_text(reasoning)] if reasoning else []
        text.append(_content_text(m.get("content")))
        text += [c if isinstance(c, str) else json.dumps(c.get("function", c) if isinstance(c, dict) else c,
                                                         ensure_ascii=False, default=str) for c in calls]
        parts.append("\n".join(t for t in text if t))
    return "\n".join(parts)


def _text_field(value, what: str, path, line_no, field) -> str:
    if isinstance(value, str):
        return value
    text = _message_text(value, role_prefix=what == "prompt")
    if text is None:
        raise InputError(f"{what} must be a string or a list of chat messages", **_at(path, line_no),
                         field=field)
    return text


def _response_after(text: str, marker: re.Pattern, line: str, path, line_no, field) -> str:
    match = marker.search(text)
    if match is None:
        raise InputError(f"no line {line!r} to split the transcript on", **_at(path, line_no), field=field)
    return text[match.end():]


def _score(value, path, line_no, field) -> float:
    """A row's score as a float; InputError naming the row unless it is a finite number a float32 can hold."""
    number = None
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    if number is None or not math.isfinite(number):
        raise InputError(f"score must be a finite number, got {value!r:.40} (a reward function that gave no "
                         "verdict logs null/NaN: leave such rows out)", **_at(path, line_no), field=field)
    if abs(number) > REWARD_MAX:
        raise InputError(f"score {number:g} is beyond a float32 reward's range (+-3.4e38)", **_at(path, line_no),
                         field=field)
    return number


def prompt_key(prompt: str) -> str:
    """The prompt id of a row without one: first 12 hex digits of the SHA-1 of the prompt text (UTF-8)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:12]


SPOOL_ROWS = 1024  # rows of one step held in memory before they are written to a hidden part file
SPOOL_HELD = 8 * SPOOL_ROWS  # rows of all steps held in memory before every step's are written


class _Spool:
    """Each step's rows, written to hidden Parquet parts as they come (every `SPOOL_ROWS` rows of a step), so a log
    of any size is converted in bounded memory; the steps' order is known only at the end, when `write` gives each
    step its index. Within a step, a prompt's responses get sample indices 0, 1, ... in input order; a digest of
    each step's (prompt id, response, reward, correct) rows tells a step that repeats the previous one."""

    def __init__(self, out_dir: Path):
        import tempfile

        out_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=".convert-spool-", dir=out_dir))  # hidden: never read as a run
        self.buffers: dict[str, list[dict]] = {}
        self.held = 0  # rows in the buffers
        self.parts: dict[str, int] = {}  # step name -> part files written
        self.folder: dict[str, Path] = {}
        self.rows: Counter = Counter()
        self.samples: dict[str, dict[str, int]] = {}  # step name -> prompt id -> responses so far
        self.digests: dict[str, object] = {}

    def add(self, name: str, row: dict) -> None:
        samples = self.samples.setdefault(name, {})
        row["sample_idx"] = samples.get(row["prompt_id"], 0)  # several responses of one prompt: one group's samples
        samples[row["prompt_id"]] = row["sample_idx"] + 1
        key = json.dumps([row["prompt_id"], row["response"], row["reward"], row["correct"]], ensure_ascii=False)
        self.digests.setdefault(name, hashlib.sha256()).update(key.encode("utf-8", "surrogatepass") + b"\n")
        self.rows[name] += 1
        buffer = self.buffers.setdefault(name, [])
        buffer.append(rollout_row(**row))
        self.held += 1
        if len(buffer) >= SPOOL_ROWS:
            self._flush(name)
        elif self.held >= SPOOL_HELD:  # many steps at once (interleaved in the input): write them all
            for other in list(self.buffers):
                self._flush(other)

    def _flush(self, name: str) -> None:
        if not self.buffers.get(name):
            return
        folder = self.folder.setdefault(name, self.dir / str(len(self.folder)))
        RolloutWriter(folder).write_step(0, self.buffers[name], part=self.parts.get(name, 0))
        self.parts[name] = self.parts.get(name, 0) + 1
        self.held -= len(self.buffers[name])
        self.buffers[name] = []

    def same(self, name: str, other: str) -> bool:
        """Whether two steps hold the same rows, row for row (equal digests and counts)."""
        return self.rows[name] == self.rows[other] and \
            self.digests[name].digest() == self.digests[other].digest()

    def group_size(self, name: str) -> int:
        """The step's most common number of samples per prompt."""
        sizes = Counter(self.samples[name].values())
        return max(sizes, key=lambda k: (sizes[k], k))

    def write(self, writer: RolloutWriter, step: int, name: str) -> None:
        """The step's rows as `writer`'s step `step`, one file, from its parts (one step in memory at a time)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._flush(name)
        files = [rollout_path(self.folder[name], 0, part) for part in range(self.parts[name])]
        table = pa.concat_tables([pq.read_table(f).drop_columns(["step"]) for f in files])
        writer.write_step(step, table)
        for f in files:
            f.unlink()

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def convert_responses(paths, out_dir: str | os.PathLike, *, lexicon="paper", tokenizer=None,
                      preset: str | None = None, response_field: str | None = None, correct_field: str | None = None,
                      score_field: str | None = None, reward_threshold: float | None = None,
                      prompt_field: str | None = None, id_field: str | None = None, step_field: str | None = None,
                      response_after: str | None = None, models: list[str] | None = None, limit: int | None = None,
                      progress: bool = False, strategy_field: str | None = None) -> dict:
    """Convert responses (files or folders, see the module doc) into a run directory.

    Explicit field arguments override the preset's. `strategy_field`: a flat-row field holding the strategy (or
    strategies, a string joined by "+" or a list of strings) the response executed, written to the rollouts'
    `strategy` column (null when the row's value is null), so the exploration test can use strategy labels; once
    named, every flat row must have it. `limit`: read at most this many rows (>= 1). Returns
    {"steps": {step index: name}, "rows": {name: n}, "step_order": rule, "skipped": [what a folder held
    besides its .jsonl and .parquet files], "repeated": {step name: the earlier step whose rows it repeats, row for
    row (kept)}, "unscored": [TRL rows no reward function scored, left out], "group_sizes": {step name: its most common
    number of samples per prompt}, "unfinished": the location of the last file's last line when it was left out
    (no line end and not JSON: a log still being written), else None} (rules: module docstring); bad input
    raises `InputError` naming the file, row and field.
    """
    from tqdm import tqdm

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"must be a positive whole number of rows, got {limit!r}", field="--limit")
    if preset and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}", field="preset")
    fields = dict(PRESETS[preset]) if preset else {}
    given = {"response_field": response_field, "correct_field": correct_field, "score_field": score_field,
             "reward_threshold": reward_threshold, "prompt_field": prompt_field, "id_field": id_field,
             "step_field": step_field, "strategy_field": strategy_field}
    fields.update({k: v for k, v in given.items() if v is not None})
    if correct_field is not None and reward_threshold is None:
        fields.pop("reward_threshold", None)  # a named correctness field, not the preset's thresholded score
    if preset and score_field is not None and reward_threshold is None and \
            PRESETS[preset].get("reward_threshold") is not None and score_field != PRESETS[preset]["score_field"]:
        raise InputError(f"the {preset} preset's reward threshold ({PRESETS[preset]['reward_threshold']:g}) is "
                         f"{PRESETS[preset]['score_field']}'s; with another score field give one: "
                         "--reward-threshold T", field="reward-threshold")
    step_named = "step_field" in fields  # named by the user or a preset: every flat row must hold it
    step_field = fields.get("step_field")  # else found in the first flat row holding one of STEP_FIELDS
    threshold = fields.get("reward_threshold")
    if threshold is not None and not fields.get("score_field"):
        raise InputError("a reward threshold needs a score field (--score-field)", field="score-field")
    marker = None
    if response_after is not None:
        marker = re.compile(r"(?:^|\n)" + re.escape(response_after) + r"[ \t]*(?:\r?\n|$)")
    skipped: list[Path] = []
    files = input_files(paths, skipped)
    out_dir = Path(out_dir)
    if (out_dir / "rollouts").is_dir() and list_rollout_files(out_dir):
        # old step files would stay next to the new ones and be analysed as part of this run
        raise InputError("already holds a run's rollouts; convert into a new folder", path=str(out_dir),
                         field="out")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer)
    tagger = PlanningTagger(lexicon, tokenizer)
    tokens = _Tokens(tagger)
    # what the conversion makes is removed again when it fails: the spool, rollouts/ and the folders it made
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]  # innermost first
    fresh_rollouts = not (out_dir / "rollouts").exists()
    spool = _Spool(out_dir)
    try:
        seen_models: dict[str, None] = {}  # every model in the input, kept or not (to name a --models typo)
        step_values: dict[str, object] = {}  # step name -> the value it came from
        step_where: dict[str, tuple] = {}  # step name -> (file, row, field) of its first row
        with_step, without_step = None, None  # (path, row) of the first flat row with / without the step field
        n_lines = 0
        unscored: list[tuple[Path, int]] = []  # (file, row) of TRL rows no reward function scored, left out
        # the last file's last line, when it has no line end and is not JSON, is a log still being written (or cut
        # off): left out and said, not an error after all the rows before it were read
        unfinished: list[str] = []
        rows_iter = ((path, line_no, obj) for path in files for line_no, obj in _read_rows(
            path, (lambda n, p=path: unfinished.append(_where(p, n))) if path == files[-1] else None))
        total = _count_rows(files) if progress else None  # a total for the bar's ETA (a quick pass over the bytes)
        if total is not None and limit is not None:
            total = min(total, limit)
        for path, line_no, obj in tqdm(rows_iter, desc="convert", unit="row", total=total,
                                       disable=None if progress else True):
            if limit is not None and n_lines >= limit:
                break
            n_lines += 1
            found = None if step_named else _first(obj, STEP_FIELDS)
            if found and step_field is None:
                step_field, step_first = found, (path, line_no)  # the row the step field was found in
            elif found and step_field not in obj:
                raise InputError(f"this row's step is in field {found!r}, earlier rows' in {step_field!r} "
                                 f"({_where(*step_first)}): name one with --step-field", **_at(path, line_no), field=found)
            step_value = obj.get(step_field) if step_field else None
            if step_value is not None and (isinstance(step_value, bool) or not isinstance(step_value, (int, float, str))
                                           or (isinstance(step_value, float) and not math.isfinite(step_value))):
                raise InputError(f"a step must be a finite number or a string, got {step_value!r}", **_at(path, line_no),
                                 field=step_field)
            if isinstance(step_value, str) and _non_finite_text(step_value):  # "NaN", "inf": a number gone bad, not a name
                raise InputError(f"a step must be a finite number or a string, got {step_value!r} (not a finite number)",
                                 **_at(path, line_no), field=step_field)

            def field_name(key: str, path=path, line_no=line_no, step_value=step_value,
                           step_field=step_field) -> str | None:
                name = fields.get(key)
                if name is None or "{step}" not in name:
                    return name
                if step_value is None:
                    raise InputError(f"the field name {name!r} needs the step, and the row has none",
                                     **_at(path, line_no), field=step_field)
                return name.replace("{step}", str(step_value))

            def named(key: str, auto, required: bool, path=path, line_no=line_no, obj=obj) -> str | None:
                name = field_name(key)
                if name is None:
                    return _first(obj, auto)
                if required and name not in obj:
                    hint = ""
                    if key == "correct_field":
                        hint = (" (verl's v1 trainer, its default, dumps no acc: threshold the score, e.g. "
                                "--reward-threshold 1 for 0/1 rewards)" if preset == "verl" else
                                " (or threshold a score: --reward-threshold)")
                    elif key == "score_field":
                        numeric = [k for k, v in obj.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
                        hint = (f"; the row's numeric fields: {', '.join(numeric) or 'none'} (name one with "
                                "--score-field, and --reward-threshold T)")
                    raise InputError("missing" + hint, **_at(path, line_no), field=name)
                return name if name in obj else None

            pf = named("prompt_field", PROMPT_FIELDS, required="prompt_field" in fields)
            idf = named("id_field", ID_FIELDS, required="id_field" in fields)
            if idf is not None and obj[idf] is None and "id_field" in fields:
                raise InputError("null prompt id", **_at(path, line_no), field=idf)
            prompt = _text_field(obj[pf], "prompt", path, line_no, pf) if pf and obj[pf] is not None else None
            if idf is not None and obj[idf] is not None:  # a null id is no id: fall back as when it is absent
                prompt_id = str(obj[idf])
            elif prompt is not None:
                prompt_id = prompt_key(prompt)
            else:
                prompt_id = str(line_no) if len(files) == 1 else f"{path.name}:{line_no}"
            entries = []
            rf = named("response_field", RESPONSE_FIELDS, required="response_field" in fields)
            if rf is not None:  # flat row
                score = None
                if fields.get("score_field"):  # named: every row has a number there (before, a missing or non-numeric
                    sf = named("score_field", (), required=True)  # score silently became a 1/0 reward)
                    if preset == "trl" and (obj[sf] is None or (isinstance(obj[sf], float) and math.isnan(obj[sf]))):
                        # TRL logs NaN where the reward function returned None: no verdict, so no row (counted)
                        unscored.append((path, line_no))
                        continue
                    score = _score(obj[sf], path, line_no, sf)
                if threshold is not None:
                    correct = score >= threshold
                else:
                    cf = named("correct_field", CORRECT_FIELDS, required="correct_field" in fields)
                    if cf is None:
                        raise InputError("missing correctness label (correct / is_correct)", **_at(path, line_no),
                                         field="correct")
                    correct = read_correctness(obj[cf], field=cf, **_at(path, line_no),
                                               score_hint=" (read a score: --score-field NAME --reward-threshold T)")
                reward = score if score is not None else (1.0 if correct else 0.0)
                if step_value is None:
                    if step_named:
                        raise InputError("missing: every row needs its step (checkpoint) when a step field is named",
                                         **_at(path, line_no), field=step_field)
                    without_step = without_step or (path, line_no)
                    name = "responses"
                else:
                    with_step = with_step or (path, line_no)
                    name = str(step_value)
                    step_values.setdefault(name, step_value)
                if with_step and without_step:  # some rows name their model, others not: no step to put them in
                    path_, row_ = without_step
                    raise InputError(f"missing, while other rows have it ({_where(*with_step)}): every row "
                                     "needs its step, or none (one step)", **_at(path_, row_), field=step_field)
                strategy = None
                stf = named("strategy_field", (), required=True) if fields.get("strategy_field") else None
                if stf is not None:
                    strategy = obj[stf]
                    ok = strategy is None or isinstance(strategy, str) or (
                        isinstance(strategy, list) and all(isinstance(x, str) for x in strategy))
                    if not ok:
                        raise InputError(f"a strategy must be a string, a list of strings or null, got {strategy!r}",
                                         **_at(path, line_no), field=stf)
                entries.append((name, obj, rf, correct, reward, strategy))
            else:  # nested: one object per model
                for key, value in obj.items():
                    if isinstance(value, dict):
                        vrf, vcf = _first(value, RESPONSE_FIELDS), _first(value, CORRECT_FIELDS)
                        if vrf is not None and vcf is not None:
                            ok = read_correctness(value[vcf], field=vcf, **_at(path, line_no))
                            entries.append((key, value, vrf, ok, 1.0 if ok else 0.0, None))
                if not entries:
                    raise InputError("none found, and no per-model object holding one of them and a correct or "
                                     "is_correct label (--response-field names another field)", **_at(path, line_no),
                                     field=RESPONSE_FIELDS)
            for name, entry, rf_, correct, reward, strategy in entries:
                seen_models[name] = None
                if models and name not in models:
                    continue
                text = _text_field(entry[rf_], "response", path, line_no, rf_)
                if marker is not None:
                    text = _response_after(text, marker, response_after, path, line_no, rf_)
                ids, mask = tokens(text)
                # a flat row's step is its step field's value, a nested row's the key of the model's object
                step_where.setdefault(name, (path, line_no, step_field if rf is not None else name))
                spool.add(name, {
                    "prompt_id": prompt_id, "prompt": prompt,
                    "response": text, "token_ids": ids, "planning_mask": mask,
                    "correct": correct, "reward": reward,
                    "error_type": _error_type(entry.get("error_type"), path, line_no), "strategy": strategy,
                })
        missing = [m for m in models or [] if m not in seen_models]
        if missing:
            raise InputError(f"no model named {', '.join(map(repr, missing))} in the input (models: "
                             f"{', '.join(seen_models) or 'none'})", path=str(files[0]) if len(files) == 1 else None,
                             field="models")
        if not spool.rows:
            raise InputError("no responses to convert", path=str(files[0]) if len(files) == 1 else None)
        names, order_rule = step_order(list(spool.rows), step_values, field=step_field, where=step_where)
        # a step whose rows equal the previous step's, row for row: TRL writes its last generation batch at each logging
        # step, so a batch that serves several optimizer steps is logged at each; kept (greedy decoding can give equal
        # steps too) and returned, for the caller to say
        repeated = {later: earlier for earlier, later in zip(names, names[1:], strict=False) if spool.same(later, earlier)}
        writer = RolloutWriter(out_dir)
        steps, group_sizes = {}, {}
        for step, name in enumerate(names):
            spool.write(writer, step, name)
            steps[step] = name
            group_sizes[name] = spool.group_size(name)
    except BaseException:  # bad input, or interrupted: nothing written stays behind
        import shutil

        spool.remove()  # first: it lies in out_dir, which is removed below if the conversion made it
        if fresh_rollouts:
            shutil.rmtree(out_dir / "rollouts", ignore_errors=True)
        for folder in made:
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise
    spool.remove()
    tok_desc = (getattr(tokenizer, "name_or_path", None) or "tokenizer") if tokenizer is not None else \
        "regex word proxy \\w+|[^\\w\\s]"
    source = str(files[0]) if len(files) == 1 else [str(f) for f in files]
    write_run_info(out_dir, {
        "run_id": out_dir.resolve().name, "algorithm": "converted", "alpha": None, "seed": None,
        "model": ", ".join(names), "task": files[0].name if len(files) == 1 else files[0].parent.name,
        "lexicon": tagger.lexicon.name if not isinstance(lexicon, (str, os.PathLike)) else
        str(Path(lexicon).resolve()) if Path(lexicon).is_file() else str(lexicon),
        "config": {"source": source, "steps": {str(k): v for k, v in steps.items()}, "step_order": order_rule,
                   "preset": preset,
                   "fields": {k: v for k, v in fields.items()}, "response_after": response_after,
                   "repeated_steps": repeated, "unscored_rows": len(unscored), "unfinished_last_line": (
                       unfinished[0] if unfinished else None),
                   "tokens": tok_desc, "logprobs": "unavailable", "entropies": "unavailable"},
    })
    return {"steps": steps, "rows": {n: spool.rows[n] for n in names}, "step_order": order_rule,
            "skipped": [str(p) for p in skipped], "repeated": repeated, "group_sizes": group_sizes,
            "unscored": [_where(path, row) for path, row in unscored],
            "unfinished": unfinished[0] if unfinished else None}
