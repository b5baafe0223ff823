"""Atomic writes, and reads of user files that fail with one clear InputError.

Writes: every output goes to a temp file in the same directory, is flushed to disk (`fsync`), then `os.replace`
renames it. A crash, a power loss or a bad input part-way never leaves a half-written file under the final name,
and a file that already existed stays intact until its replacement is complete. A folder (a saved model) is
written the same way (`atomic_dir`).

Reads (`read_text`, `read_yaml`, `read_jsonl`): an unreadable file, bytes that are not UTF-8 and lines that are not
JSON raise `InputError` with the file and line, which the CLI prints as one line (exit 2).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hicra.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success rename it onto `path`, on failure delete it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(exc, path) from None
    if path.is_dir():
        os.unlink(tmp)
        raise InputError("cannot write here: a directory of that name exists", path=str(path))
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the final file the permissions a plain open() would (0666 less umask)
        os.chmod(tmp_path, 0o666 & ~_umask())
        _fsync(tmp_path)  # the bytes on disk before the name: after a power loss, the old file or the whole new one
        os.replace(tmp_path, path)
        _fsync(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _cannot_write(exc: OSError, path: Path) -> InputError:
    """The one-line error for an output whose folder or temp could not be made: the folder is a file, lies under
    one, or cannot be written."""
    return InputError(f"cannot write here: {exc.strerror} ({exc.filename})", path=str(path))


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') writes to disk; a file system that cannot is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder next to `path`; on success it takes the name `path`, on failure it is deleted.

    The new folder's files are flushed to disk first (`fsync`, as `atomic_path`). A folder already at `path` is
    renamed aside and deleted only after the new one is in place, so a reader sees the old folder or the complete
    new one, never a half-written one (for the instant between the two renames, none). The temp and set-aside
    names start with a dot. InputError (one line) when `path` is a file or its parent cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise _cannot_write(exc, path) from None
    if path.exists() and not path.is_dir():
        tmp.rmdir()
        raise InputError("cannot write a folder here: a file of that name exists", path=str(path))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; a plain mkdir gives 0777 less umask
        for f in [*(p for p in tmp.rglob("*") if p.is_file()), tmp]:  # on disk before the name, as atomic_path
            _fsync(f)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_writable(path: str | os.PathLike, field: str | None = None) -> None:
    """InputError (one line) when a file cannot be written at `path` because a folder has that name or a part of its
    folder path is a file. For commands with several outputs: checked for all of them before any is written, so a
    refusal replaces none."""
    path = Path(path)
    if path.is_dir():
        raise InputError("cannot write here: a directory of that name exists", path=str(path), field=field)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write here: {parent} is a file", path=str(path), field=field)
            return


def _flock(fd: int, on_busy: Callable[[], None]) -> bool:
    """Take an exclusive `flock` on the open `fd`: at once if free, else after `on_busy()` (which may raise instead)
    and a wait. False where the file system has no locks (some network mounts): nothing then tells whether another
    process is at work."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        on_busy()
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def dir_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock (`flock`) on the folder `path`, made if absent, for the block. A second
    process asking for it meanwhile gets InputError (one line): two writers of one run directory would mix or lose
    each other's files. The lock belongs to the open folder, so a killed holder frees it. Where `fcntl` is missing
    (not POSIX) or the file system has no locks, the block runs unlocked."""
    path = Path(path)
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise _cannot_write(exc, path) from None

    def refuse() -> None:
        raise InputError("another process is writing this run directory now: wait for it to end, or write "
                         "elsewhere", path=str(path)) from None

    try:
        _flock(fd, refuse)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, on_wait: Callable[[Path], None] | None = None) -> Iterator[bool]:
    """Hold an exclusive advisory lock (`flock`) on the file `path` (made if absent, and left in place) for the
    block, waiting while another process holds it; `on_wait(path)` is called once before a wait. Yields True when
    held, False where `fcntl` is missing or the file system has no locks (then nothing can tell whether another
    process is at work). A killed holder frees the lock. InputError (one line) when the file cannot be made."""
    path = Path(path)
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not POSIX
        yield False
        return
    check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # read-only: flock needs no write access, so users who share a cache can all lock the file one of them made
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _cannot_write(exc, path) from None
    try:
        yield _flock(fd, lambda: on_wait(path) if on_wait is not None else None)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_parquet(path: str | os.PathLike, table) -> None:
    """Write a `pyarrow.Table` (or anything `pyarrow.table()` accepts) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.table(table)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_jsonl(path: str | os.PathLike, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=_json_default) + "\n")


def _json_default(obj: Any):
    # numpy scalars and arrays, Paths
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Reading user files: every failure is an InputError naming the file and line, never a traceback


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The whole file as UTF-8 text. Unreadable -> "cannot read WHAT"; not UTF-8 -> the line and byte."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", path=str(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        raise InputError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start - line_start + 1})",
                         path=str(path), row=raw.count(b"\n", 0, exc.start) + 1) from None


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """json's object_pairs_hook: a dict, or _DuplicateKey naming the first key given twice (json.loads would keep
    the last value silently; read_yaml refuses the same)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


def _loads(text: str, path, row: int | None = None) -> Any:
    """json.loads with duplicate keys refused; InputError naming the file and line."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise InputError(f"bad JSON: {exc.msg} (column {exc.colno})", path=str(path),
                         row=exc.lineno if row is None else row) from None
    except _DuplicateKey as exc:
        raise InputError(f"a key given twice in one object (JSON would keep the last silently): {exc.args[0]!r:.60}",
                         path=str(path), row=row) from None


def read_json(path: str | os.PathLike, what: str = "file", objects: bool = True) -> Any:
    """A whole-file JSON document. Unreadable or not UTF-8 -> `read_text`'s errors; bad JSON -> "bad JSON: MSG
    (column C)" with its line; a key given twice in one object -> an error; with `objects`, a value that is not a
    JSON object -> "not a JSON object"."""
    value = _loads(read_text(path, what), path)
    if objects and not isinstance(value, dict):
        raise InputError("not a JSON object", path=str(path))
    return value


_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")  # a JSON escape of a surrogate code point


def lone_surrogate(text: str) -> str | None:
    """'U+D800 at character N' (N from 1) for the first lone surrogate in `text` (a JSON escape such as \\ud800
    that is not half of a pair: not Unicode text, cannot be written out), else None."""
    m = _SURROGATE_RE.search(text)
    return None if m is None else f"U+{ord(m.group()):04X} at character {m.start() + 1}"


def _first_lone_surrogate(value: Any, where: str = "") -> tuple[str, str] | None:
    """(field path, what) of the first string in a parsed JSON value holding a lone surrogate, else None."""
    if isinstance(value, str):
        bad = lone_surrogate(value)
        return (where, bad) if bad else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        bad = lone_surrogate(key) if isinstance(key, str) else None  # a key is named at the object holding it
        found = (where, bad) if bad else _first_lone_surrogate(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


@functools.cache
def _unique_key_loader():
    """A SafeLoader that refuses a mapping key given twice (built on first use: yaml is imported lazily). The keys a
    merge key (`<<: *defaults`) brings in may be overridden, as in any YAML loader."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    again = key in seen
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if again:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first on line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return Loader


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """A YAML file (`yaml.safe_load`'s types); bad YAML, or a mapping key given twice (safe_load would keep the last
    silently) -> InputError with the line of the problem, on one line."""
    import yaml

    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"bad YAML: {getattr(exc, 'problem', None) or exc}", path=str(path),
                         row=mark.line + 1 if mark else None) from None


def read_jsonl(path: str | os.PathLike, what: str = "file", objects: bool = True,
               on_unfinished: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line, streamed.

    Unreadable file, a line that is not UTF-8 or not JSON, a key given twice in one object and (with `objects`) a
    value that is not a JSON object raise InputError naming the file and the line. With `on_unfinished`, a last
    line without a line end that is not JSON (a log still being written, or cut off) is not an error: it is left
    out and `on_unfinished(line number)` is called."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", path=str(path)) from None
    with fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if on_unfinished is not None and not raw.endswith(b"\n") and exc.end == len(raw) \
                        and exc.reason == "unexpected end of data":  # cut inside its last character
                    on_unfinished(line_no)
                    return
                raise InputError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                                 path=str(path), row=line_no) from None
            if not line.strip():
                continue
            try:
                value = _loads(line.rstrip("\r\n"), path, line_no)  # stripped: an error at the end has its column
            except InputError:
                if on_unfinished is None or line.endswith("\n"):  # only a last line lacks its end
                    raise
                on_unfinished(line_no)
                return
            if objects and not isinstance(value, dict):
                raise InputError("each line must be a JSON object", path=str(path), row=line_no)
            if _SURROGATE_ESCAPE_RE.search(line):  # a pair decodes to one character; a lone half cannot be text
                found = _first_lone_surrogate(value)
                if found:
                    raise InputError(f"not Unicode text: a lone surrogate {found[1]}", path=str(path), row=line_no,
                                     field=found[0] or None)
            yield line_no, value


def as_flag(value: Any) -> bool:
    """A true/false value as a bool: a bool, the numbers 0 and 1 (numpy and 0-d torch scalars too), or the strings
    "true"/"false" (any case). ValueError otherwise, e.g. "must be true/false or 0/1, got 0.5: a score, not a
    label" for another number (a cast would have read 0.5, 7 or NaN as true)."""
    if not isinstance(value, (str, bytes)) and getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()  # numpy / torch scalars
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, (int, float)):
        raise ValueError(f"must be true/false or 0/1, got {value!r}: a score, not a label")
    raise ValueError(f"must be true/false, got {value!r}")


def read_correctness(value: Any, path: str | os.PathLike, row: int, field: str, table_row: bool = False,
                     score_hint: str = "") -> bool:
    """A record's correctness flag as a bool (`as_flag`). Anything else raises InputError naming the file, the row
    (1-based) and the field; another number is called a score, not a label, followed by `score_hint` (how the
    caller reads a score instead)."""
    try:
        return as_flag(value)
    except ValueError as exc:
        hint = score_hint if "a score" in str(exc) else ""
        raise InputError(f"correctness {exc}{hint}", path=str(path), row=row, field=field,
                         table_row=table_row) from None


def load_tokenizer(path: str | os.PathLike, field: str = "tokenizer"):
    """A Hugging Face tokenizer from a local directory; a missing or unloadable one is an InputError (one line)."""
    if not Path(path).exists():
        raise InputError("tokenizer directory not found", path=str(path), field=field)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - any loader failure here means the directory is not a tokenizer
        reason = " ".join(str(exc).split())  # transformers' messages span several lines
        raise InputError(f"cannot load tokenizer ({type(exc).__name__}: {reason})", path=str(path),
                         field=field) from None


def load_causal_lm(path: str | os.PathLike, field: str = "model", **kwargs):
    """A Hugging Face causal LM from a local directory; a missing or unloadable one is an InputError (one line).
    `kwargs` go to `AutoModelForCausalLM.from_pretrained` (e.g. dtype)."""
    if not Path(path).exists():
        raise InputError("model directory not found", path=str(path), field=field)
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001 - any loader failure here means the directory holds no usable model
        reason = " ".join(str(exc).split())
        raise InputError(f"cannot load model ({type(exc).__name__}: {reason})", path=str(path),
                         field=field) from None
