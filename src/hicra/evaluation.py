"""Local math benchmarks, math-verify grading and pass@k.

Two ways in:
- `grade_items(items, k)`: grade responses that already exist (from any system), no model needed;
- `evaluate_model(model_dir, benches, n, k)`: sample `n` responses per problem with transformers (vLLM when
  installed and asked for), then grade them the same way.

Both return a results dict (written as `results.json`): per item the list of booleans `correct` in response order,
and per benchmark and overall `pass@1` (mean over the n samples) and `pass@k` (unbiased estimator):

    pass@k = E_items[ 1 - C(n - c, k) / C(n, k) ]        (Chen et al. 2021; c = correct samples out of n)

Benchmarks are read from `../shared/data` (relative to the working directory's repository) or `--data-dir`.
Their files name the same things differently; `BENCHMARKS` is the documented field map per benchmark.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hicra.errors import InputError
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
    """`../shared/data` next to the repository checkout (searched upwards from the working directory)."""
    here = Path.cwd().resolve()
    for base in [here, *here.parents]:
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return here.parent / "shared" / "data"


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in `text`, braces matched; None if there is none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i:j - 1] if depth == 0 else None


def _format_answer(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _strip_dollars(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


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
        return ", ".join(_strip_dollars(str(v)) for v in values)
    return _strip_dollars(_format_answer(raw))


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
        raise InputError("benchmark file not found (pass --data-dir)", path=str(path))
    items = []
    for line_no, row in read_jsonl(path, "benchmark"):
        for field in (spec.problem, spec.answer):
            if field not in row:
                raise InputError("missing", path=str(path), row=line_no, field=field)
        item_id = row.get(spec.id, line_no - 1) if spec.id else line_no - 1
        items.append({"id": str(item_id), "benchmark": name, "problem": str(row[spec.problem]),
                      "answer": gold_answer(row, spec), "solution": gold_solution(row, spec)})
        if limit is not None and len(items) >= limit:
            break
    return items


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

    Field names are mapped with the `*_field` arguments. The problem text is optional (kept for rollout rows).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=str(path))
    items = []
    for line_no, row in read_jsonl(path, "responses"):
        for field in (id_field, answer_field, responses_field):
            if field not in row:
                raise InputError("missing", path=str(path), row=line_no, field=field)
        responses = row[responses_field]
        if isinstance(responses, str) or not isinstance(responses, list) or \
                not all(isinstance(r, str) for r in responses) or not responses:
            raise InputError("must be a non-empty list of strings", path=str(path), row=line_no,
                             field=responses_field)
        answer = row[answer_field]  # null: no gold answer, graded wrong (as a benchmark row without one)
        items.append({"id": str(row[id_field]), "problem": str(row.get(problem_field, "")),
                      "answer": None if answer is None else _strip_dollars(_format_answer(answer)),
                      "responses": responses})
    if not items:
        raise InputError("no rows", path=str(path))
    return items


# ----------------------------------------------------------------------------------------------------------------
# Grading


_GSM8K_FINAL = re.compile(r"####\s*([^\n]+)\s*$")
_CALCULATOR = re.compile(r"<<[^<>]*>>")
# AoPS answer style \textbf{(073)}: the choice wrapper is not part of the value
_CHOICE_WRAPPER = re.compile(r"\\textbf\{\(?([^{}()]*)\)?\}")


def normalize_response(text: str) -> str:
    """Make GSM8K/AoPS-style text gradable: drop `<<a*b=c>>` calculator marks, unwrap `\\textbf{(N)}`, and turn a
    final `#### N` into \\boxed{N}."""
    text = _CHOICE_WRAPPER.sub(r"\1", _CALCULATOR.sub("", text))
    match = _GSM8K_FINAL.search(text.rstrip())
    if match:
        text = text[:match.start()] + "\\boxed{" + match.group(1).strip().replace(",", "") + "}"
    return text


class Grader:
    """math-verify equivalence of a response's final answer with the gold answer.

    The gold answer is parsed once per distinct string (cached) as `\\boxed{answer}`; the response is parsed with
    math-verify's default extraction (boxed answers first, then the last LaTeX/plain expression).
    """

    def __init__(self, timeout_seconds: int = 5):
        self.timeout_seconds = timeout_seconds
        self._gold_cache: dict[str, list] = {}

    def gold(self, answer: str) -> list:
        if answer not in self._gold_cache:
            from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

            parsed = parse("\\boxed{" + answer + "}", extraction_config=[LatexExtractionConfig(),
                                                                        ExprExtractionConfig()],
                           parsing_timeout=self.timeout_seconds)
            if not parsed:  # not LaTeX-parseable: compare as a plain string
                parsed = parse(answer, parsing_timeout=self.timeout_seconds) or [answer]
            self._gold_cache[answer] = parsed
        return self._gold_cache[answer]

    def __call__(self, response: str, answer: str | None) -> bool:
        if answer is None or not response:
            return False
        from math_verify import parse, verify

        pred = parse(normalize_response(response), parsing_timeout=self.timeout_seconds)
        if not pred:
            return False
        return bool(verify(self.gold(answer), pred, timeout_seconds=self.timeout_seconds))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k), with n samples of which c are correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def summarize(items: Sequence[dict], k: int) -> dict:
    """pass@1 (mean correct share over samples) and pass@k averaged over items; k is capped at each item's n."""
    if not items:
        return {"n_items": 0, "n_responses": 0, "k": k, "pass@1": None, "pass@k": None}
    p1 = [sum(it["correct"]) / len(it["correct"]) for it in items]
    pk = [pass_at_k(len(it["correct"]), sum(it["correct"]), min(k, len(it["correct"]))) for it in items]
    return {"n_items": len(items), "n_responses": sum(len(it["correct"]) for it in items), "k": k,
            "pass@1": sum(p1) / len(p1), "pass@k": sum(pk) / len(pk)}


def grade_items(items: Sequence[dict], k: int = 1, grader: Grader | None = None,
                progress: bool = True) -> dict:
    """Grade `items` (each with id, answer, responses, optional benchmark) -> results dict (see module doc)."""
    from tqdm import tqdm

    grader = grader or Grader()
    graded = []
    total = sum(len(it["responses"]) for it in items)
    with tqdm(total=total, desc="grading", unit="resp", disable=not progress) as bar:
        for it in items:
            correct = []
            for response in it["responses"]:
                correct.append(grader(response, it["answer"]))
                bar.update(1)
            graded.append({"id": it["id"], "benchmark": it.get("benchmark", "responses"),
                           "answer": it["answer"], "correct": correct})
    by_bench: dict[str, list] = {}
    for it in graded:
        by_bench.setdefault(it["benchmark"], []).append(it)
    overall = summarize(graded, k)
    return {"k": k, "pass@1": overall["pass@1"], "pass@k": overall["pass@k"],
            "n_items": overall["n_items"], "n_responses": overall["n_responses"],
            "benchmarks": {name: summarize(its, k) for name, its in by_bench.items()},
            "items": graded}


# ----------------------------------------------------------------------------------------------------------------
# Rollout rows (run-directory schema), so `hicra analyze` works on evaluation samples too


def rollout_rows(items: Sequence[dict], results: dict, step: int = 0) -> list[dict]:
    """One run-directory rollout row per response.

    Without generation (graded files) the token ids are unknown: `token_ids` is empty and `logprobs`/`entropies`
    are null (the schema's "unknown"). Per-token lists whose length differs from `token_ids` are also nulled."""
    from hicra.dynamics.records import rollout_row

    rows = []
    for it, graded in zip(items, results["items"], strict=True):
        n = len(it["responses"])
        for j, response in enumerate(it["responses"]):
            ok = bool(graded["correct"][j])
            tokens = list(it["token_ids"][j]) if "token_ids" in it else []
            per_token = {}
            for key in ("logprobs", "entropies"):
                values = it[key][j] if key in it else None
                per_token[key] = list(values) if values is not None and len(values) == len(tokens) \
                    and tokens else None
            rows.append(rollout_row(
                step=step, prompt_id=f"{graded['benchmark']}/{it['id']}", sample_idx=j,
                prompt=it.get("prompt", it.get("problem", "")), response=response,
                token_ids=tokens, **per_token,
                reward=1.0 if ok else 0.0, correct=ok,
                truncated=bool(it.get("truncated", [False] * n)[j]), error_type=None,
            ))
    return rows


def write_results(out_dir: str | Path, items: Sequence[dict], results: dict, run_info: dict) -> dict:
    """Write `results.json`, `run.json` and the rollout rows (a run directory for `hicra analyze`).

    Returns a dict of written paths."""
    from hicra.dynamics.records import RolloutWriter, write_run_info
    from hicra.fileio import write_json

    out_dir = Path(out_dir)
    # the rollout rows first: they are validated, and a bad one must not leave a results.json behind
    rollouts = RolloutWriter(out_dir).write_step(0, rollout_rows(items, results))
    write_run_info(out_dir, run_info)
    write_json(out_dir / "results.json", results)
    return {"results": out_dir / "results.json", "rollouts": rollouts}


# ----------------------------------------------------------------------------------------------------------------
# Generation


def build_prompt(problem: str, tokenizer, template: str = DEFAULT_PROMPT) -> str:
    """The prompt text: `template` filled with the problem, through the chat template when the tokenizer has one."""
    text = template.format(problem=problem)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return text


def generate_transformers(model_dir: str | Path, prompts: Sequence[str], n: int, max_new_tokens: int = 512,
                          temperature: float = 0.6, top_p: float = 0.95, batch_size: int = 8, seed: int = 0,
                          progress: bool = True) -> list[dict]:
    """Sample `n` responses per prompt with transformers' `generate`.

    Returns per prompt `{responses, token_ids, logprobs, entropies, truncated}`; logprobs and entropies are those of
    the sampling distribution (logits / temperature, before top-p), per generated token."""
    import torch
    from tqdm import tqdm

    from hicra.fileio import load_causal_lm, load_tokenizer

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(model_dir, field="model")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_causal_lm(model_dir, dtype=dtype).to(device).eval()
    eos = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    flat = [p for p in prompts for _ in range(n)]
    out: list[dict] = []
    for start in tqdm(range(0, len(flat), batch_size), desc="generating", disable=not progress):
        chunk = flat[start:start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=temperature > 0, temperature=temperature or None,
                                 top_p=top_p if temperature > 0 else None, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, output_logits=True,
                                 return_dict_in_generate=True)
        seqs = gen.sequences[:, enc["input_ids"].shape[1]:]
        logits = torch.stack(gen.logits, dim=1).float() / (temperature if temperature > 0 else 1.0)
        logp = torch.log_softmax(logits, dim=-1)
        token_logp = logp.gather(-1, seqs.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp.exp() * logp).sum(-1)
        for i in range(seqs.shape[0]):
            ids = seqs[i].tolist()
            length = next((t + 1 for t, tok in enumerate(ids) if tok in eos), len(ids))
            finished = length < len(ids) or (ids and ids[-1] in eos)
            keep = ids[:length]
            if keep and keep[-1] in eos:  # the end-of-sequence token is not part of the text
                keep = keep[:-1]
            m = len(keep)
            out.append({"response": tokenizer.decode(keep, skip_special_tokens=True), "token_ids": keep,
                        "logprobs": token_logp[i, :m].tolist(), "entropies": entropy[i, :m].tolist(),
                        "truncated": not finished})
    return [_regroup(out[i * n:(i + 1) * n]) for i in range(len(prompts))]


def generate_vllm(model_dir: str | Path, prompts: Sequence[str], n: int, max_new_tokens: int = 512,
                  temperature: float = 0.6, top_p: float = 0.95, seed: int = 0, **_) -> list[dict]:
    """Sample with vLLM (optional dependency). Entropies are not available from vLLM and are left empty."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), seed=seed)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, logprobs=0)
    results = []
    for request in llm.generate(list(prompts), params):
        samples = []
        for o in request.outputs:
            lps = [next(iter(d.values())).logprob for d in (o.logprobs or [])]
            samples.append({"response": o.text, "token_ids": list(o.token_ids), "logprobs": lps,
                            "entropies": [], "truncated": o.finish_reason == "length"})
        results.append(_regroup(samples))
    return results


def _regroup(samples: list[dict]) -> dict:
    return {"responses": [s["response"] for s in samples], "token_ids": [s["token_ids"] for s in samples],
            "logprobs": [s["logprobs"] for s in samples], "entropies": [s["entropies"] for s in samples],
            "truncated": [s["truncated"] for s in samples]}


def evaluate_model(model_dir: str | Path, benches: Iterable[str], n: int = 1, k: int | None = None,
                   limit: int | None = None, data_dir: str | Path | None = None, engine: str = "auto",
                   template: str = DEFAULT_PROMPT, progress: bool = True, fields: dict | None = None,
                   **gen_kwargs) -> tuple[list, dict]:
    """Generate `n` samples per problem for each benchmark (a name or a .jsonl file read with `fields`) and grade
    them. Returns (items, results)."""
    import importlib.util

    from hicra.fileio import load_tokenizer

    if not Path(model_dir).is_dir():
        raise InputError("model directory not found", path=str(model_dir))
    k = n if k is None else k
    if not 1 <= k <= n:
        raise InputError(f"need 1 <= k <= n (got k={k}, n={n})", field="k")
    if engine == "auto":
        engine = "vllm" if importlib.util.find_spec("vllm") else "transformers"
    items = []
    for bench in benches:  # the benchmark files first: their errors come before loading the model
        name, spec = resolve_bench(bench, fields)
        items += load_benchmark(name, data_dir, limit, spec=spec)
    if not items:
        raise InputError("no problems to evaluate", field="bench")
    tokenizer = load_tokenizer(model_dir, field="model")
    prompts = [build_prompt(it["problem"], tokenizer, template) for it in items]
    generate = generate_vllm if engine == "vllm" else generate_transformers
    samples = generate(model_dir, prompts, n, progress=progress, **gen_kwargs)
    for it, prompt, sample in zip(items, prompts, samples, strict=True):
        it.update(sample, prompt=prompt)
    results = grade_items(items, k=k, progress=progress)
    results.update(model=str(model_dir), engine=engine, n=n)
    return items, results
