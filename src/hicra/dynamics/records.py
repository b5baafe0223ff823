"""Run directory I/O: the rollout record schema, an atomic writer, and a streaming, validating reader.

Layout (DESIGN.md "Run directory")::

    RUN_DIR/
      run.json                             {"run_id", "algorithm", "alpha", "seed", "model", "task", "lexicon",
                                            "created", "config": {...}}
      rollouts/step_{step:06d}_part{part:03d}.parquet   one or more files per step, one row per sampled response
                                           (a foreign `step_<N>.parquet` is read as part 0; other names: error)

Every file is written to a temp name (``.NAME.XXXX.tmp``) in the same folder and renamed, so a reader never sees a
half-written file under its final name. The reader lists the files once, when it starts, and ignores temp files:
a run that is still being written is read up to its last complete file. A final file that cannot be parsed (a
foreign writer that did not write atomically) is treated as still being written and left out; an unparsable file
before it is an error.

Columns (one row per sampled response):

====================  ===================  ========  =====================================================
column                type                 required  meaning
====================  ===================  ========  =====================================================
step                  int32                yes       training step (must match the file name)
prompt_id             string               yes       responses with the same prompt_id form one group
sample_idx            int32                yes       index of the sample within its group: 0, 1, ... over the
                                                     step's responses to that prompt_id (lab, verl, convert); TRL
                                                     numbers within a generation group, so a prompt drawn twice
                                                     in a batch repeats 0..G-1 (counted: `n_repeated_keys`)
prompt                string               no        prompt text
response              string               yes       response text (decoded)
token_ids             list<int32>          yes       response token ids
logprobs              list<float32>        no        behaviour-policy log-probabilities at sampling; null = unknown
entropies             list<float32>        no        next-token distribution entropy (nats); null = unknown
planning_mask         list<bool>           no        planning-token mask; null = recompute from a lexicon
reward                float32              yes       scalar reward
correct               bool                 yes       answer judged correct
truncated             bool                 no        hit the length limit
error_type            string               no        "execution" | "planning" | "format" | null (correct/unknown)
strategy              string               no        strategies the response executed, joined by "+"; null = unparsed
                                                     (an integer column is read as label codes: 3 -> "3")
====================  ===================  ========  =====================================================

Every writer (lab, TRL, verl, evaluation, convert, synthetic) builds its rows with `rollout_row`.

Validation (`validate_table`) raises `InputError` naming the file, the row inside that file (counted from 1,
written `FILE, row N (1-based)`, as `hicra convert` names a Parquet row) and the field for: a missing required
column, a column of the wrong type, an empty step, a null in a required column, a `step` value that differs from the
file name, list columns whose lengths differ from `token_ids`, log-probabilities that are not finite or are above 0
(beyond `VALUE_TOLERANCE` = 1e-6, float rounding), and entropies that are not finite or are below 0 (the same
tolerance). With ``skip_invalid=True`` bad rows (or whole files) are dropped instead and described in the returned
problems.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hicra.dynamics.vocab import ERROR_TYPES
from hicra.errors import InputError
from hicra.fileio import as_flag, read_json, write_json, write_parquet

ROLLOUT_SCHEMA = pa.schema([
    pa.field("step", pa.int32()),
    pa.field("prompt_id", pa.string()),
    pa.field("sample_idx", pa.int32()),
    pa.field("prompt", pa.string()),
    pa.field("response", pa.string()),
    pa.field("token_ids", pa.list_(pa.int32())),
    pa.field("logprobs", pa.list_(pa.float32())),
    pa.field("entropies", pa.list_(pa.float32())),
    pa.field("planning_mask", pa.list_(pa.bool_())),
    pa.field("reward", pa.float32()),
    pa.field("correct", pa.bool_()),
    pa.field("truncated", pa.bool_()),
    pa.field("error_type", pa.string()),
    pa.field("strategy", pa.string()),
])

# the largest finite value of the float32 `reward` column: a larger one would be cast to inf
REWARD_MAX = float(np.finfo(np.float32).max)
REQUIRED_COLUMNS = ("step", "prompt_id", "sample_idx", "response", "token_ids", "reward", "correct")
# per-token columns that, when present and non-null, must have one value per token id
TOKEN_LIST_COLUMNS = ("logprobs", "entropies", "planning_mask")
BOOL_FIELDS = ("planning_mask", "correct", "truncated")

ROLLOUTS_DIR = "rollouts"
RUN_INFO = "run.json"
# step_{step:06d}_part{part:03d}.parquet; a foreign `step_<N>.parquet` (no part) is part 0
_FILE_RE = re.compile(r"^step_(\d+)(?:_part(\d+))?\.parquet$")


def rollout_path(run_dir: str | os.PathLike, step: int, part: int = 0) -> Path:
    """`RUN_DIR/rollouts/step_{step:06d}_part{part:03d}.parquet`."""
    return Path(run_dir) / ROLLOUTS_DIR / f"step_{int(step):06d}_part{int(part):03d}.parquet"


# ---------------------------------------------------------------- run.json

def write_run_info(run_dir: str | os.PathLike, info: dict) -> Path:
    """Write `RUN_DIR/run.json` atomically. Fills `run_id` (folder name) and `created` (UTC, ISO 8601) if absent."""
    run_dir = Path(run_dir)
    info = dict(info)
    info.setdefault("run_id", run_dir.resolve().name)
    info.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    path = run_dir / RUN_INFO
    write_json(path, info)
    return path


def run_file(run_dir: str | os.PathLike, spec: str | os.PathLike) -> Path | None:
    """The file or folder a run.json field names ("lexicon", "tokenizer"), as it exists now: the run directory's
    entry of that base name first (a copied or moved run keeps its own copy there, while an absolute path written
    where the run was made may point at another run's file or at nothing), then the path as written, a relative one
    taken from the run directory. None when neither exists (e.g. a preset name such as "lab")."""
    run_dir, path = Path(run_dir), Path(spec)
    for candidate in (run_dir / path.name, path if path.is_absolute() else run_dir / path):
        if candidate.exists():
            return candidate
    return None


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """Read `RUN_DIR/run.json`; `{}` when the run has none (foreign logs). Bad JSON raises `InputError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("not a run directory", path=str(run_dir))
    path = run_dir / RUN_INFO
    if not path.exists():
        return {}
    return read_json(path, "run.json")


# ---------------------------------------------------------------- validation

@dataclass(frozen=True)
class Problem:
    """One piece of bad input that was skipped (`skip_invalid=True`); `row` counts from 1 (None: the whole file)."""

    file: str
    row: int | None
    field: str | None
    message: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return str(InputError(self.message, path=self.file, row=self.row, field=self.field, table_row=True))


def validate_table(table: pa.Table, path: str | os.PathLike, *, step: int | None = None,
                   skip_invalid: bool = False) -> tuple[pa.Table, list[Problem]]:
    """Check one rollout file's table; return it cast to `ROLLOUT_SCHEMA` types, plus the problems skipped.

    Columns outside the schema are dropped; absent optional columns stay absent (see `conform`). Raises
    `InputError(path=, row=, field=)` on the first problem (row counted from 1) unless `skip_invalid`, in which case
    bad rows are removed (a file-level problem, or a file left without rows, gives an empty table).
    """
    path = str(path)
    problems: list[Problem] = []

    def fail(message: str, row: int | None = None, field: str | None = None):
        if not skip_invalid:
            raise InputError(message, path=path, row=row, field=field)
        problems.append(Problem(path, row, field, message))

    for name in REQUIRED_COLUMNS:
        if name not in table.column_names:
            fail("missing required column", field=name)
            return table.slice(0, 0), problems
    # cast to the schema's types (foreign writers use int64 / float64 / large lists)
    columns, fields = [], []
    reward_overflow = np.zeros(table.num_rows, dtype=bool)
    not_binary: dict[str, np.ndarray] = {}  # bool fields written as numbers: rows with a value other than 0 or 1
    for field in ROLLOUT_SCHEMA:
        if field.name not in table.column_names:
            continue
        col = table.column(field.name)
        if field.name in BOOL_FIELDS:
            not_binary[field.name] = _not_binary(col, table.num_rows)
        if field.name == "strategy" and not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                                             or pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
            # integer codes are read as labels ("3"); a float, bool or list column is more likely a mistake
            fail(f"has type {col.type}: strategy labels are strings (or integer codes)", field=field.name)
            return table.slice(0, 0), problems
        if field.name == "reward" and pa.types.is_floating(col.type) and col.type != field.type:
            values = col.to_numpy(zero_copy_only=False).astype(float)  # before the cast turns them into inf
            reward_overflow = np.isfinite(values) & (np.abs(values) > REWARD_MAX)
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                row = _first_out_of_range(col, field.type)
                fail(f"has type {col.type}, expected {field.type}"
                     + ("" if row is None else f" (row {row + 1}'s value is out of its range)"), field=field.name)
                return table.slice(0, 0), problems
        columns.append(col)
        fields.append(field)
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    if table.num_rows == 0:
        fail("empty step: the file has no rows", field="step")
        return table, problems

    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    # (row, field, message) for each bad row; only the first per row is reported
    found: dict[int, tuple[str, str]] = {}

    def flag(rows_mask: np.ndarray, field: str, message: str):
        for r in np.flatnonzero(rows_mask & ~bad):
            found[int(r)] = (field, message)
        bad[:] |= rows_mask

    for name in REQUIRED_COLUMNS:
        flag(_np_bool(table.column(name).is_null()), name, "null value in a required column")
    if step is not None:
        steps = table.column("step").fill_null(step).to_numpy(zero_copy_only=False)
        flag(steps != step, "step", f"step value differs from the file name (step {step})")
    flag(_np_bool(pc.is_nan(table.column("reward")).fill_null(False)), "reward", "NaN reward")
    flag(reward_overflow, "reward", "beyond the float32 reward column's range (+-3.4e38)")
    flag(_np_bool(pc.is_inf(table.column("reward")).fill_null(False)), "reward", "infinite reward (must be finite)")
    for name, rows in not_binary.items():
        flag(rows, name, "a true/false value written as a number must be 0 or 1")
    if "error_type" in table.column_names:
        col = table.column("error_type")
        unknown = _np_bool(pc.invert(pc.is_in(col, value_set=pa.array(ERROR_TYPES)))) & _np_bool(col.is_valid())
        flag(unknown, "error_type", f"unknown error type (one of {', '.join(ERROR_TYPES)}, or null)")
    n_tokens = _np_int(pc.list_value_length(table.column("token_ids")).fill_null(0))
    flat_ids = pc.list_flatten(table.column("token_ids"))
    if flat_ids.null_count:
        flag(_rows_with(table.column("token_ids"), flat_ids.is_null(), n), "token_ids", "null token id")
    for name in TOKEN_LIST_COLUMNS:
        if name not in table.column_names:
            continue
        col = table.column(name)
        lengths = pc.list_value_length(col)
        present = _np_bool(lengths.is_valid())
        lens = _np_int(lengths.fill_null(0))
        mismatch = present & (lens != n_tokens)
        flag(mismatch, name, "list length differs from token_ids")
        flat = pc.list_flatten(col)
        if flat.null_count:
            flag(_rows_with(col, flat.is_null(), n), name, "null element in list")
        if name in ("logprobs", "entropies") and len(flat):
            values = np.asarray(_to_np(flat.fill_null(0.0)), dtype=np.float64)
            what = "log-probability" if name == "logprobs" else "entropy"
            with np.errstate(invalid="ignore"):
                checks = [(np.isnan(values), f"NaN {what}"),
                          (np.isinf(values), f"infinite {what} (must be finite)")]
                if name == "logprobs":  # a log-probability is log p <= 0
                    checks.append((values > VALUE_TOLERANCE, f"positive log-probability (above {VALUE_TOLERANCE:g}; "
                                                              "a log-probability is <= 0)"))
                else:  # an entropy is >= 0
                    checks.append((values < -VALUE_TOLERANCE, f"negative entropy (below -{VALUE_TOLERANCE:g})"))
            for bad_values, message in checks:
                if bad_values.any():
                    flag(_rows_with(col, pa.array(bad_values), n), name, message)

    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        if not skip_invalid:
            field, message = found[first]
            raise InputError(message, path=path, row=first + 1, field=field, table_row=True)
        for r in sorted(found):
            problems.append(Problem(path, r + 1, found[r][0], found[r][1]))
        table = table.filter(pa.array(~bad))
        if table.num_rows == 0:
            problems.append(Problem(path, None, "step", "empty step: no valid rows left"))
    return table, problems


VALUE_TOLERANCE = 1e-6  # float rounding: a log-probability up to +1e-6 (an entropy down to -1e-6) is accepted


def _not_binary(col, n_rows: int) -> np.ndarray:
    """Rows of a bool column (scalar or list) written as numbers whose value, or one of whose elements, is not 0 or
    1 (NaN included): casting would read 0.5, 7 or NaN as True. All False for a column of another type."""
    values = pc.list_flatten(col) if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) else col
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        return np.zeros(n_rows, dtype=bool)
    bad = pa.array(~_np_bool(pc.is_in(values, value_set=pa.array([0, 1], type=values.type)))
                   & _np_bool(values.is_valid()))
    if values is col:
        return _np_bool(bad)
    return _rows_with(col, bad, n_rows)


def _np_bool(arr) -> np.ndarray:
    return np.asarray(_to_np(arr), dtype=bool)


def _np_int(arr) -> np.ndarray:
    return np.asarray(_to_np(arr), dtype=np.int64)


def _to_np(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


def _rows_with(list_col, element_flags, n_rows: int) -> np.ndarray:
    """Rows of a list column that contain at least one flagged element."""
    if isinstance(list_col, pa.ChunkedArray):
        list_col = list_col.combine_chunks()
    parents = _np_int(pc.list_parent_indices(list_col))
    flags = np.asarray(_to_np(element_flags), dtype=bool)
    out = np.zeros(n_rows, dtype=bool)
    out[parents[flags]] = True
    return out


def conform(table: pa.Table, columns: Sequence[str] | None = None) -> pa.Table:
    """Return `table` with exactly `columns` (default: all of `ROLLOUT_SCHEMA`) in schema order and types;
    absent optional columns become all-null columns."""
    names = [f.name for f in ROLLOUT_SCHEMA] if columns is None else \
        [f.name for f in ROLLOUT_SCHEMA if f.name in set(columns)]
    arrays, fields = [], []
    for name in names:
        field = ROLLOUT_SCHEMA.field(name)
        if name in table.column_names:
            col = table.column(name)
            arrays.append(col if col.type == field.type else col.cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# ---------------------------------------------------------------- rows

def to_numpy(value: Any) -> Any:
    """A torch tensor as a numpy array (detached, on the CPU; bfloat16, which numpy lacks, as float32); anything
    else unchanged. torch is not imported."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return value


def _array(value: Any, dtype) -> np.ndarray | None:
    """A 1-D numpy array of `dtype` from a list, numpy array or torch tensor; None stays None."""
    if value is None:
        return None
    return np.asarray(to_numpy(value), dtype=dtype).reshape(-1)


def _flags(value: Any, field: str) -> np.ndarray | None:
    """A 1-D bool array from bools or the numbers 0/1 (list, numpy array or torch tensor); None stays None.
    ValueError naming `field` for any other value, which a cast would read as True."""
    if value is None:
        return None
    values = np.asarray(to_numpy(value)).reshape(-1)
    if values.dtype != bool:
        bad = ~np.isin(values, (0, 1)) if values.dtype.kind in "iuf" else np.ones(values.shape, dtype=bool)
        if bad.any():
            where = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{field} must hold true/false or 0/1, got {values[where].item()!r} at position {where}")
    return values.astype(bool)


def _flag(value: Any, field: str) -> bool:
    try:
        return as_flag(value)
    except ValueError as exc:
        raise ValueError(f"{field} {exc}") from None


def rollout_row(*, prompt_id: Any, sample_idx: int, response: str, token_ids: Any, reward: float, correct: bool,
                step: int | None = None, prompt: str | None = None, logprobs: Any = None, entropies: Any = None,
                planning_mask: Any = None, truncated: bool | None = None, error_type: str | None = None,
                strategy: str | Sequence[str] | None = None) -> dict:
    """One rollout row (one sampled response) in `ROLLOUT_SCHEMA`'s columns and types, for `RolloutWriter`.

    Lists (`token_ids` [n], `logprobs` [n], `entropies` [n], `planning_mask` [n]) may be Python lists, numpy arrays
    or torch tensors (bfloat16 included); they become int32 / float32 / bool numpy arrays. `None` means unknown
    (written as null). `correct` and `truncated` are bools or 0/1 (`hicra.fileio.as_flag`: also "true"/"false"),
    `planning_mask` bools or 0/1: any other value (NaN, 0.5, 7, "no") is a ValueError naming the field, since a
    cast would read it as true. `strategy` is a label, an integer label code (written as its decimal text) or a
    sequence of labels (joined by "+"). Without `step` the writer fills it in. Lengths are checked by the writer,
    which names the file, row and field of a bad row.
    """
    if isinstance(strategy, (int, np.integer)) and not isinstance(strategy, (bool, np.bool_)):
        strategy = str(int(strategy))
    elif strategy is not None and not isinstance(strategy, str):
        strategy = "+".join(str(s) for s in strategy)
    row = {
        "prompt_id": str(prompt_id), "sample_idx": int(sample_idx),
        "prompt": None if prompt is None else str(prompt), "response": str(response),
        "token_ids": _array(token_ids, np.int32), "logprobs": _array(logprobs, np.float32),
        "entropies": _array(entropies, np.float32), "planning_mask": _flags(planning_mask, "planning_mask"),
        "reward": float(reward), "correct": _flag(correct, "correct"),
        "truncated": None if truncated is None else _flag(truncated, "truncated"),
        "error_type": None if error_type is None else str(error_type), "strategy": strategy,
    }
    if step is not None:
        row["step"] = int(step)
    return row


# ---------------------------------------------------------------- writer

class RolloutWriter:
    """Writes one run's rollout files: `RolloutWriter(run_dir).write_step(step, rows, part=0)`.

    `rows` is a list of dicts with the schema's keys (numpy arrays and torch tensors are accepted for the list
    columns; a missing `step` is filled in; absent optional columns are written as nulls), or a `pyarrow.Table`.
    Rows are validated exactly as the reader validates them, so a bad row fails at the writer, not at analysis.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        (self.run_dir / ROLLOUTS_DIR).mkdir(parents=True, exist_ok=True)

    def write_step(self, step: int, rows: list[dict] | pa.Table, part: int = 0) -> Path:
        step, part = int(step), int(part)
        path = rollout_path(self.run_dir, step, part)
        if isinstance(rows, pa.Table):
            table = rows
            if "step" not in table.column_names:
                table = table.append_column("step", pa.array(np.full(table.num_rows, step, np.int32)))
        else:
            table = _rows_to_table(rows, step, path)
        table, _ = validate_table(table, path, step=step)
        write_parquet(path, conform(table))
        return path


def _rows_to_table(rows: list[dict], step: int, path: Path) -> pa.Table:
    """Dict rows as a table of the schema's columns, each built from its values as they are (0/1 flags, tensors;
    prompt ids as text, as `rollout_row` writes them), so that `validate_table` casts and checks them as it does a
    foreign file's, naming the row and field of a bad value. A key outside the schema, or a column whose values
    mix types, is an InputError."""
    known = {f.name for f in ROLLOUT_SCHEMA}
    clean = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - known)
        if unknown:
            raise InputError(f"not a rollout column (known: {', '.join(sorted(known))})", path=str(path),
                             row=i + 1, field=unknown[0], table_row=True)
        row = {key: to_numpy(value) for key, value in row.items()}
        row.setdefault("step", step)
        if row.get("prompt_id") is not None:
            row["prompt_id"] = str(row["prompt_id"])  # as `rollout_row` writes it
        for key, value in row.items():
            if isinstance(value, np.ndarray):
                if value.ndim > 1 or (value.ndim == 1 and key not in TOKEN_LIST_COLUMNS + ("token_ids",)):
                    raise InputError(f"an array of shape {value.shape} (one row holds one response: a list per "
                                     "token, one value otherwise)", path=str(path), row=i + 1, field=key,
                                     table_row=True)
                row[key] = value.tolist() if value.ndim else value.item()
            elif isinstance(value, np.generic):
                row[key] = value.item()
        clean.append(row)
    names = [f.name for f in ROLLOUT_SCHEMA]
    present = [n for n in names if any(n in r for r in clean)] if clean else list(REQUIRED_COLUMNS)
    columns = {}
    for name in present:
        values = [r.get(name) for r in clean]
        try:
            columns[name] = pa.array(values) if any(v is not None for v in values) else \
                pa.nulls(len(values), ROLLOUT_SCHEMA.field(name).type)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            first = next(type(v) for v in values if v is not None)
            row = next((i for i, v in enumerate(values) if v is not None and type(v) is not first), None)
            raise InputError(f"values of mixed or unsupported types ({' '.join(str(exc).split())})", path=str(path),
                             row=None if row is None else row + 1, field=name, table_row=True) from None
    return pa.table(columns) if clean else pa.Table.from_pylist([], schema=pa.schema(
        [ROLLOUT_SCHEMA.field(n) for n in present]))


# ---------------------------------------------------------------- reader

def list_rollout_files(run_dir: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """Complete rollout files as (step, part, path), sorted. `step_<N>.parquet` is read as part 0 of step N;
    hidden entries (the writers' `.NAME.XXXX.tmp` temp files) are left out; any other entry, or two files naming
    the same (step, part), is an `InputError` naming it, never skipped silently."""
    folder = Path(run_dir) / ROLLOUTS_DIR
    if not folder.is_dir():
        raise InputError("no rollouts/ folder: not a run directory", path=str(run_dir))
    out = []
    seen: dict[tuple[int, int], str] = {}
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        m = _FILE_RE.match(entry.name)
        if m is None or not entry.is_file():
            raise InputError("not a rollout file: expected step_<N>_part<M>.parquet or step_<N>.parquet (move it out "
                             "of rollouts/)", path=entry.path)
        key = (int(m.group(1)), int(m.group(2) or 0))
        if key in seen:  # e.g. step_1.parquet and step_000001_part000.parquet: reading both would double the rows
            first, second = sorted([seen[key], entry.path])
            raise InputError(f"names the same step and part ({key[0]}, {key[1]}) as {first}: keep one of the two "
                             "files", path=second)
        seen[key] = entry.path
        out.append((*key, Path(entry.path)))
    out.sort()
    return out


def _first_out_of_range(col, target: pa.DataType) -> int | None:
    """The first row (0-based) of an integer column whose value the integer type `target` cannot hold, else None."""
    if not (pa.types.is_integer(col.type) and pa.types.is_integer(target)):
        return None
    info = np.iinfo(target.to_pandas_dtype())
    values = col.to_numpy(zero_copy_only=False)
    rows = np.flatnonzero((values < info.min) | (values > info.max))  # a null (NaN here) compares False
    return int(rows[0]) if rows.size else None


def iter_steps(run_dir: str | os.PathLike, *, columns: Sequence[str] | None = None,
               skip_invalid: bool = False, skipped: list[Problem] | None = None,
               validate: bool = True, steps: Collection[int] | None = None) -> Iterator[tuple[int, pa.Table]]:
    """Yield `(step, table)` in step order, one step in memory at a time (only `steps`, when given; the other
    steps' files are not opened).

    The parts of a step are concatenated; the table has `columns` (default: the whole schema) in schema order,
    absent optional columns as nulls. Files are listed once, when iteration starts (a run being written is read
    up to its last complete file). Bad input raises `InputError`; with `skip_invalid` the bad rows/files are
    skipped and appended to `skipped` (a list of `Problem`).
    """
    files = list_rollout_files(run_dir)
    if skipped is None:
        skipped = []
    wanted = None if columns is None else list(columns)
    read_cols = None if wanted is None else sorted(set(wanted) | set(REQUIRED_COLUMNS) | set(TOKEN_LIST_COLUMNS))
    by_step: dict[int, list[Path]] = {}
    for step, _part, path in files:
        by_step.setdefault(step, []).append(path)
    last_path = files[-1][2] if files else None
    for step in sorted(by_step):
        if steps is not None and step not in steps:
            continue
        parts = []
        for path in by_step[step]:
            try:
                available = pq.read_schema(path).names
                cols = None if read_cols is None else [c for c in read_cols if c in available]
                table = pq.read_table(path, columns=cols)
            except (pa.ArrowInvalid, OSError) as exc:
                if path == last_path:  # a foreign writer still writing its last file
                    skipped.append(Problem(str(path), None, None, "unreadable last file, treated as incomplete"))
                    continue
                if not skip_invalid:
                    raise InputError(f"unreadable Parquet file ({exc})", path=str(path)) from None
                skipped.append(Problem(str(path), None, None, f"unreadable Parquet file ({exc})"))
                continue
            if validate:
                table, problems = validate_table(table, path, step=step, skip_invalid=skip_invalid)
                skipped.extend(problems)
                if table.num_rows == 0:
                    continue
            parts.append(conform(table, wanted))
        if parts:
            yield step, pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def read_rollouts(run_dir: str | os.PathLike, **kwargs: Any) -> pa.Table:
    """All steps in one table (small runs, tests). Takes `iter_steps`' keyword arguments."""
    tables = [t for _, t in iter_steps(run_dir, **kwargs)]
    if not tables:
        return conform(ROLLOUT_SCHEMA.empty_table(), kwargs.get("columns"))
    return pa.concat_tables(tables)
