"""Local math benchmarks: where each lives under the data root and which fields hold problem, answer and solution.

Benchmarks are read from `--data-dir`, else `$HICRA_SHARED_DATA`, else `../shared/data` (searched upwards from the
working directory). Their files name the same things differently; `BENCHMARKS` is the documented field map per
benchmark. Any other JSONL is described with `jsonl_spec`. Gold answers are turned into text by
`grading.answer_text` (numbers without Python's float repr).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from hicra.errors import InputError
from hicra.evaluation.grading import answer_text, extract_boxed
from hicra.fileio import read_jsonl

# ----------------------------------------------------------------------------------------------------------------
# Benchmarks and their field maps


@dataclass(frozen=True)
class BenchSpec:
    """Where a benchmark lives and which fields hold what.

    `answer_from` says how the gold answer is obtained:
      "field"  -> the `answer` field as is (numbers are written without a trailing ".0"),
      "boxed"  -> the last \\boxed{...} in the `solution` field,
      "gsm8k"  -> the text after "####" in the `answer` field (the rest of that field is the solution),
      "list"   -> a list of answers in the `answer` field, joined with ", " (OlympiadBench `final_answer`).
    `solution` is None when the benchmark ships no worked solution.
    """

    path: str
    problem: str
    answer: str
    id: str | None
    solution: str | None
    answer_from: str = "field"


BENCHMARKS: dict[str, BenchSpec] = {
    "math500": BenchSpec("bench/math500/test.jsonl", problem="problem", answer="answer", id="unique_id",
                         solution="solution"),
    "aime24": BenchSpec("bench/aime24/test.jsonl", problem="problem", answer="answer", id="id",
                        solution="solution"),
    "amc23": BenchSpec("bench/amc23/test.jsonl", problem="problem", answer="answer", id="id", solution=None),
    "minerva_math": BenchSpec("bench/minerva_math/test.jsonl", problem="problem", answer="solution", id="idx",
                              solution="solution", answer_from="boxed"),
    "olympiadbench": BenchSpec("bench/olympiadbench/test.jsonl", problem="question", answer="final_answer",
                               id="id", solution="solution", answer_from="list"),
    "gsm8k": BenchSpec("gsm8k/test.jsonl", problem="question", answer="answer", id=None, solution="answer",
                       answer_from="gsm8k"),
}

DEFAULT_PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def default_data_dir() -> Path:
    """The folder named by the environment variable `HICRA_SHARED_DATA` when it is set (as for the tests), else
    `../shared/data` next to the repository checkout (searched upwards from the working directory)."""
    if os.environ.get("HICRA_SHARED_DATA"):
        return Path(os.environ["HICRA_SHARED_DATA"])
    here = Path.cwd().resolve()
    for base in [here, *here.parents]:
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return here.parent / "shared" / "data"


def gold_answer(row: dict, spec: BenchSpec) -> str | None:
    """The gold answer of one benchmark row as a LaTeX string (no surrounding $), per `spec.answer_from`."""
    raw = row.get(spec.answer)
    if raw is None:
        return None
    if spec.answer_from == "boxed":
        return extract_boxed(str(raw))
    if spec.answer_from == "gsm8k":
        _, sep, tail = str(raw).rpartition("####")
        return tail.strip().replace(",", "") if sep else None
    if spec.answer_from == "list":
        values = raw if isinstance(raw, list) else [raw]
        return ", ".join(answer_text(v) for v in values)
    return answer_text(raw)


def gold_solution(row: dict, spec: BenchSpec) -> str | None:
    """The worked solution (a list of alternatives is reduced to the first), or None."""
    if spec.solution is None or row.get(spec.solution) is None:
        return None
    sol = row[spec.solution]
    return str(sol[0]) if isinstance(sol, list) else str(sol)


def jsonl_spec(path: str | Path, problem: str = "problem", answer: str = "answer", id: str | None = "id",  # noqa: A002
               solution: str | None = None, answer_from: str = "field") -> BenchSpec:
    """A field map for any JSONL file (used for `--bench FILE.jsonl`); a missing id field means the line number."""
    if answer_from not in ("field", "boxed", "gsm8k", "list"):
        raise InputError(f"answer_from must be field, boxed, gsm8k or list, got {answer_from!r}",
                         field="answer-from")
    return BenchSpec(str(path), problem=problem, answer=answer, id=id, solution=solution, answer_from=answer_from)


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None,
                   spec: BenchSpec | None = None) -> list[dict]:
    """Rows `{id, benchmark, problem, answer, solution}` of a named benchmark (see `BENCHMARKS`), or of any JSONL
    described by `spec` (its path absolute or relative to the working directory)."""
    if spec is None:
        if name not in BENCHMARKS:
            raise InputError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (or a .jsonl file)",
                             field="bench")
        spec = BENCHMARKS[name]
        path = Path(data_dir or default_data_dir()) / spec.path
    else:
        path = Path(spec.path)
    if not path.is_file():
        hint = (" (the data folder: --data-dir in hicra eval, data.data_dir in hicra train, or HICRA_SHARED_DATA)"
                if name in BENCHMARKS and spec is BENCHMARKS[name] else "")
        raise InputError("benchmark file not found" + hint, path=str(path))
    items = []
    seen: dict[str, int] = {}
    for line_no, row in read_jsonl(path, "benchmark"):
        for field in (spec.problem, spec.answer):
            if field not in row:
                raise InputError("missing", path=str(path), row=line_no, field=field)
        raw = row[spec.answer]
        if isinstance(raw, dict) or (isinstance(raw, list) and spec.answer_from != "list"):
            raise InputError(f"a gold answer is a string or a number, got {type(raw).__name__} {raw!r:.60}"
                             + (" (a list of answers: answer_from list)" if isinstance(raw, list) else ""),
                             path=str(path), row=line_no, field=spec.answer)
        gold = gold_answer(row, spec)
        if gold is None:  # graded, every response would count as wrong
            why = {"boxed": "holds no \\boxed{}", "gsm8k": "holds no '#### ' line"}.get(spec.answer_from, "is null")
            raise InputError(f"no gold answer: the field {why}", path=str(path), row=line_no, field=spec.answer)
        item_id = str(row.get(spec.id, line_no - 1) if spec.id else line_no - 1)
        _check_unique(seen, item_id, path, line_no, spec.id or "id",
                      "; a row without an id takes its line number minus 1")
        items.append({"id": item_id, "benchmark": name, "problem": str(row[spec.problem]),
                      "answer": gold, "solution": gold_solution(row, spec)})
        if limit is not None and len(items) >= limit:
            break
    return items


def _check_unique(seen: dict[str, int], item_id: str, path: Path, line_no: int, field: str, hint: str = "") -> None:
    """Record `item_id` at `line_no` in `seen`; InputError when an earlier line had it (two rows of one id would be
    one prompt group in the rollouts)."""
    if item_id in seen:
        raise InputError(f"duplicate id {item_id!r} (also at line {seen[item_id]}{hint})", path=str(path),
                         row=line_no, field=field)
    seen[item_id] = line_no


def resolve_bench(name: str, fields: dict | None = None) -> tuple[str, BenchSpec | None]:
    """(benchmark name, spec): a known name -> (name, None); a path to a .jsonl file -> (file stem, its spec
    from `fields`: problem, answer, id, solution, answer_from)."""
    if name in BENCHMARKS:
        return name, None
    if name.endswith(".jsonl"):
        return Path(name).stem, jsonl_spec(name, **(fields or {}))
    raise InputError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (or a .jsonl file)",
                     field="bench")


def read_responses_file(path: str | Path, id_field: str = "id", problem_field: str = "problem",
                        answer_field: str = "answer", responses_field: str = "responses") -> list[dict]:
    """Read a JSONL of existing responses: one line per problem with id, problem, answer, responses (list of str).
    Returns one dict per line: id, problem, answer (text), responses, line (its line number, from 1).

    Field names are mapped with the `*_field` arguments. The problem text is optional (kept for rollout rows); the
    gold answer is a string or a finite number (null, booleans, NaN, lists and objects are InputErrors naming the
    row).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=str(path))
    items = []
    seen: dict[str, int] = {}
    for line_no, row in read_jsonl(path, "responses"):
        for field in (id_field, answer_field, responses_field):
            if field not in row:
                raise InputError("missing", path=str(path), row=line_no, field=field)
        _check_unique(seen, str(row[id_field]), path, line_no, id_field)
        responses = row[responses_field]
        if isinstance(responses, str) or not isinstance(responses, list) or \
                not all(isinstance(r, str) for r in responses) or not responses:
            raise InputError("must be a non-empty list of strings", path=str(path), row=line_no,
                             field=responses_field)
        answer = row[answer_field]
        if answer is None:  # graded, every response would count as wrong (as benchmark files refuse it)
            raise InputError("no gold answer (null)", path=str(path), row=line_no, field=answer_field)
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or (
                isinstance(answer, float) and not math.isfinite(answer)):  # true/NaN had been graded as "True"/"nan"
            raise InputError(f"a gold answer is a string or a finite number, got {type(answer).__name__} "
                             f"{answer!r:.60}", path=str(path), row=line_no, field=answer_field)
        problem = row.get(problem_field)
        if problem is not None and not isinstance(problem, str):
            raise InputError(f"a problem is text, got {type(problem).__name__} {problem!r:.60}", path=str(path),
                             row=line_no, field=problem_field)
        items.append({"id": str(row[id_field]), "problem": problem or "", "answer": answer_text(answer),
                      "responses": responses, "line": line_no})
    if not items:
        raise InputError("no rows", path=str(path))
    return items
