"""Local math benchmarks, grading and pass@k (`hicra eval`).

Two ways in:
- `grade_items(items, k)`: grade responses that already exist (from any system), no model needed;
- `evaluate_model(model_dir, benches, n, k)`: sample `n` responses per problem with transformers (vLLM when
  installed and asked for), then grade them the same way.

Both return a results dict (written as `results.json`): per item the list of booleans `correct` in response order,
and per benchmark and overall `pass@1` (mean over the n samples) and `pass@k` (unbiased estimator):

    pass@k = E_items[ 1 - C(n - c, k) / C(n, k) ]        (Chen et al. 2021; c = correct samples out of n)

Modules: `benchmarks` (field maps, loading), `grading` (the grader and its rules, results), `generation`
(sampling), `cli` (the `hicra eval` verb). The names below are importable from `hicra.evaluation` directly.
"""

from hicra.evaluation.benchmarks import (
    BENCHMARKS,
    DEFAULT_PROMPT,
    BenchSpec,
    default_data_dir,
    gold_answer,
    gold_solution,
    jsonl_spec,
    load_benchmark,
    read_responses_file,
    resolve_bench,
)
from hicra.evaluation.generation import build_prompt, evaluate_model, generate_transformers, generate_vllm
from hicra.evaluation.grading import (
    Grader,
    answer_text,
    clean_answer,
    drop_percent,
    extract_boxed,
    final_answer,
    grade_items,
    normalize_response,
    number_text,
    numbers_equal,
    rollout_rows,
    strip_dollars,
    summarize,
    write_results,
)
from hicra.stats import pass_at_k

__all__ = [
    "BENCHMARKS", "DEFAULT_PROMPT", "BenchSpec", "Grader", "answer_text", "build_prompt", "clean_answer",
    "default_data_dir", "drop_percent", "evaluate_model", "extract_boxed", "final_answer", "generate_transformers",
    "generate_vllm", "gold_answer", "gold_solution", "grade_items", "jsonl_spec", "load_benchmark",
    "normalize_response", "number_text", "numbers_equal", "pass_at_k", "read_responses_file", "resolve_bench",
    "rollout_rows", "strip_dollars", "summarize", "write_results",
]
