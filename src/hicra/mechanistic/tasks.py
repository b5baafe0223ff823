"""What the mechanistic tools need from a task: a prompt, an exact checker and a final answer per response.

`Task` is the protocol; two adapters implement it:
- `LabTask`: the lab's task families (anything with `check(problem, response) -> CheckResult`, e.g.
  `hicra.lab.tasks.TaskMix`); prompts are `hicra.lab.model.format_prompt(problem.question)`, the final answer is
  what follows the last `so the answer is`;
- `MathTask`: real models on math benchmarks, graded by math-verify (`hicra.evaluation.Grader`); problems are
  dicts with "id", "problem" and "answer" (as `hicra.evaluation.load_benchmark` returns them).

`lab_heldout_problems(run_dir)` is the one place that turns a lab run directory into its held-out problems.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Protocol

from hicra.errors import InputError
from hicra.fileio import read_json
from hicra.lab.tasks.base import CheckResult


class Task(Protocol):
    """A task the mechanistic tools can resample against."""

    def problem_id(self, problem: Any) -> str: ...

    def prompt(self, problem: Any) -> str:
        """The prompt text the model continues (the response follows it directly)."""

    def check(self, problem: Any, response: str) -> CheckResult: ...

    def final_answer(self, problem: Any, response: str) -> str | None:
        """The response's final answer as a comparable string; None when it gives none."""

    def is_answer_sentence(self, sentence: str) -> bool:
        """True for a sentence that states the final answer (its own class in `hicra anchors`)."""


def meaning(task, sentence: str) -> str:
    """The key by which `hicra anchors` decides whether a regenerated sentence says something different: the task's
    `meaning(sentence)` when it has one, else the whitespace-normalised text (`hicra.mechanistic.sentences.normalize`).
    Two sentences with the same key count as the same step."""
    from hicra.mechanistic.sentences import normalize

    fn = getattr(task, "meaning", None)
    return fn(sentence) if fn is not None else normalize(sentence)


class LabTask:
    """A lab task family (or `TaskMix`) as a `Task`. `checker.check(problem, response)` decides correctness."""

    def __init__(self, checker):
        self.checker = checker

    def problem_id(self, problem) -> str:
        return str(problem.id)

    def prompt(self, problem) -> str:
        from hicra.lab.model import format_prompt

        return format_prompt(problem.question)

    def check(self, problem, response: str) -> CheckResult:
        return self.checker.check(problem, response)

    def final_answer(self, problem, response: str) -> str | None:
        from hicra.lab.tasks.base import answer_text

        ans = answer_text(response)
        return None if ans is None else " ".join(ans.split())

    def is_answer_sentence(self, sentence: str) -> bool:
        from hicra.lab.tasks.base import ANSWER_PREFIX

        return ANSWER_PREFIX in sentence.lower()

    def meaning(self, sentence: str) -> str:
        """A paraphrase of a strategic move means its move (`"move:pairing"`; `hicra.lab.tasks.language.PHRASES`),
        so regenerating "pair the first and last terms" as "use the pairing trick" changes nothing; any other
        sentence (a computation line, the answer) means its whitespace-normalised text."""
        from hicra.mechanistic.sentences import normalize

        text = normalize(sentence)
        move = _lab_moves().get(text.lower())
        return f"move:{move}" if move is not None else text


@functools.cache
def _lab_moves() -> dict[str, str]:
    """{normalised lower-case paraphrase: move} of the lab's planning language."""
    from hicra.lab.tasks.language import PHRASES
    from hicra.mechanistic.sentences import normalize

    return {normalize(text).lower(): move for move, texts in PHRASES.items() for text in texts}


class MathTask:
    """Math benchmark items ({"id", "problem", "answer"}) graded by math-verify; prompts through
    `hicra.evaluation.build_prompt` (the tokenizer's chat template when it has one)."""

    def __init__(self, tokenizer, template: str | None = None, timeout_seconds: int = 5):
        from hicra.evaluation import DEFAULT_PROMPT, Grader

        self.tokenizer = tokenizer
        self.template = DEFAULT_PROMPT if template is None else template
        self.grader = Grader(timeout_seconds=timeout_seconds)

    def problem_id(self, problem: dict) -> str:
        return str(problem["id"])

    def prompt(self, problem: dict) -> str:
        from hicra.evaluation import build_prompt

        return build_prompt(problem["problem"], self.tokenizer, self.template)

    def check(self, problem: dict, response: str) -> CheckResult:
        if self.final_answer(problem, response) is None:
            return CheckResult(0.0, False, "format", "math-verify found no answer")
        ok = self.grader(response, problem.get("answer"))
        return CheckResult(float(ok), ok, None if ok else "unknown", "" if ok else "not equivalent to the gold answer")

    def final_answer(self, problem: dict, response: str) -> str | None:
        from math_verify import parse

        from hicra.evaluation import normalize_response

        if not response:
            return None
        pred = parse(normalize_response(response), parsing_timeout=self.grader.timeout_seconds)
        return str(pred[0]) if pred else None

    def is_answer_sentence(self, sentence: str) -> bool:
        return "\\boxed" in sentence or "\\fbox" in sentence


def read_run_info(run_dir: str | Path) -> dict:
    """run.json of a run directory (`hicra.dynamics.records.read_run_info`); InputError when there is none."""
    from hicra.dynamics.records import read_run_info as read_info

    info = read_info(run_dir)
    if not info:
        raise InputError("not a run directory (no run.json)", path=str(run_dir))
    return info


def lab_heldout_problems(run_dir: str | Path, run_info: dict | None = None) -> tuple[LabTask, list]:
    """The lab task and its held-out problems, in the run's order.

    The task mix is rebuilt from run.json's config (`tasks`, `optimum`, `heldout_share`); the problems are the ids
    eval.json lists in `heldout_ids` (`TaskMix.problem`: the mix's own question text), or, for a run without that list, the
    held-out set `hicra.lab.rl` draws (`n_eval` problems). An id that is not a lab problem id is an error.
    """
    from hicra.lab.sft import eval_problems
    from hicra.lab.tasks import TaskMix

    run_dir = Path(run_dir)
    info = read_run_info(run_dir) if run_info is None else run_info
    config = info.get("config")
    if not isinstance(config, dict):
        raise InputError("missing or not an object", path=str(run_dir / "run.json"), field="config")
    for key in ("tasks", "n_eval"):
        if key not in config:
            raise InputError("missing", path=str(run_dir / "run.json"), field=f"config.{key}")
    try:
        task = TaskMix(config["tasks"], optimum=config.get("optimum"),
                       heldout_share=float(config.get("heldout_share", 0.1)))
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot rebuild the tasks: {exc}", path=str(run_dir / "run.json"),
                         field="config.tasks") from None
    eval_path = run_dir / "eval.json"
    ids = read_json(eval_path, "eval.json").get("heldout_ids") if eval_path.is_file() else None
    if ids is None:
        try:
            return LabTask(task), eval_problems(task, int(config["n_eval"]))
        except (TypeError, ValueError) as exc:
            raise InputError(f"cannot rebuild the held-out problems: {exc}", path=str(run_dir / "run.json"),
                             field="config.n_eval") from None
    if not isinstance(ids, list):
        raise InputError("expected a list of problem ids", path=str(eval_path), field="heldout_ids")
    problems = []
    for i, pid in enumerate(ids):
        try:
            problems.append(task.problem(str(pid)))
        except ValueError:
            raise InputError(f"entry {i + 1} is not a lab problem id: {pid!r}", path=str(eval_path),
                             field="heldout_ids") from None
        if problems[-1].family not in task.by_family:
            raise InputError(f"entry {i + 1} ({pid!r}): problem family {problems[-1].family!r} is not among the "
                             "run's tasks", path=str(eval_path), field="heldout_ids")
    return LabTask(task), problems
