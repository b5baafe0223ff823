"""Grading: a response's final answer against a gold answer (math-verify, plus the rules below); pass@1 / pass@k
summaries; rollout rows of graded responses.

Rules (docs/scale.md, "Grading rules"):

1. **Final answer.** The content of the *last complete* ``\\boxed{...}`` (or ``\\fbox{...}``) of the response;
   earlier boxes are drafts, and boxes are never merged into a set. A GSM8K-style final ``#### N`` line (N a plain
   number, commas as thousands separators, with a sign, a ``$`` before it or words after it) counts as a box; any
   other ``####`` line (a markdown heading) is text.
2. **Unfinished responses are wrong.** A ``\\boxed{`` opened after the last complete box and never closed, or a
   ``<think>`` block never closed, means there is no complete final answer. When a ``</think>`` is present, only the
   text after the last one is the answer part.
3. **No box at all.** math-verify's own extraction on the answer part of the text: the content of the last complete
   ``<answer>...</answer>`` block, else the text after the last ``</think>``; a sentence's punctuation just before
   the end of math (``\\[ y \\in [0, 1]. \\]``) dropped, and a number in scientific notation read both as
   math-verify reads it and as in rule 5 (but a signed exponent inside math, ``$2e-1$``, only as math-verify does).
4. **Percent.** A percent sign (``\\%``, ``%``, ``\\text{\\%}``, with or without a space) is dropped from gold and
   response alike: ``10\\%`` and ``10`` are the same answer (a bare ``%`` in a gold is not a LaTeX comment).
5. **Numbers.** Numbers in scientific notation (``1e-07``, also a JSON number gold) become plain decimals first;
   a mantissa with a decimal point keeps the value a decimal (``3.333333e6`` -> ``3333333.0``, ``3e6`` ->
   ``3000000``). Two numeric values compare exactly when both are exact (50 significant digits, no rounding to
   decimals), and relatively when a decimal is involved: a decimal against an exact value when they agree to six
   significant digits (relative difference <= `rel_tol`, 5e-6), two decimals when they are the same number
   (relative difference <= 1e-12). Tuples, sets and intervals of numbers compare element by element with the same
   rule. A one-variable equation ``x = 5`` is compared by its right-hand side (against a bare value, or an equation
   in the same variable). Everything else (expressions with symbols, other equations, matrices, text) is
   math-verify's verdict.
6. **Time limit.** math-verify is called with its signal-based timeouts off (``parsing_timeout=None``,
   ``timeout_seconds=None``), so it runs in any thread; the grader keeps its own limit per verdict and grades a
   response wrong when its verdict does not finish in time (counted in ``Grader.timeouts`` and in the results'
   ``timeouts``). On the main thread a SIGALRM timer stops the verdict; on any other thread the verdict runs in a
   helper thread that is abandoned when time is up (Python cannot stop a thread, so it keeps a share of the CPU
   until it finishes). A power or factorial of over ten million digits (``9^{9^9}``) is never evaluated: numbers
   holding one are compared by logarithms taken from their structure (`_huge_equal`), anything else holding one
   equals only the same expression.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from itertools import product
from pathlib import Path

from hicra.stats import pass_at_k

# ----------------------------------------------------------------------------------------------------------------
# Answer text


_SCIENTIFIC = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d+)\s*$")
# trailing sentence punctuation and LaTeX spacing commands (\, \; \: \! and "\ "), as in "104." or "5\,"; a
# final lone backslash is a "\ " whose space was stripped (not the line break "\\")
_TRAILING = re.compile(r"(?:\\[,;:! ]|[\s.,;:])*(?:(?<!\\)\\)?\Z")
_PERCENT = re.compile(r"(?:\s|~|\\[,;:! ])*(?:\\(?:text|textrm|mathrm|mbox)\s*\{\s*\\?%\s*\}|\\?%)")


def _plain_decimal(number: Decimal) -> str:
    """A decimal in positional notation (no exponent), without trailing zeros after the point."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def number_text(value: int | float) -> str:
    """A JSON/Python number as answer text: integers as is, floats in positional notation from their shortest
    repr (1e-07 -> "0.0000001", 2.0 -> "2"), never as Python's float repr with an exponent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return _plain_decimal(Decimal(repr(value)))


def strip_dollars(text: str) -> str:
    """`$...$` around a whole answer removed."""
    text = text.strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


def answer_text(value) -> str:
    """Any gold value (a JSON string or number) as answer text: numbers via `number_text`, strings stripped of
    surrounding `$`; a whole answer in scientific notation becomes a plain decimal ("1.5e-7" -> "0.00000015"),
    which keeps a decimal point when its mantissa has one ("3.333333e6" -> "3333333.0": still a decimal for
    rule 5, not an exact integer; "3e6" -> "3000000")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value)
    text = strip_dollars(str(value))
    match = _SCIENTIFIC.match(text)
    if match:
        try:
            plain = _plain_decimal(Decimal(text.strip()))
        except InvalidOperation:  # pragma: no cover - the regex only admits valid decimals
            return text
        if "." in match.group(1) and "." not in plain:
            plain += ".0"
        return plain
    return text


def drop_percent(text: str) -> str:
    """`text` without percent signs (and the spaces before them): "10\\%" -> "10", "10 %" -> "10"."""
    return _PERCENT.sub("", text).strip()


def clean_answer(text: str) -> str:
    """The comparable form of an extracted answer: percent signs, trailing sentence punctuation ("104.") and
    trailing LaTeX spacing ("5\\,") dropped, scientific notation made positional."""
    return answer_text(_TRAILING.sub("", drop_percent(strip_dollars(text))))


# ----------------------------------------------------------------------------------------------------------------
# Final answer of a response


# a final "#### 1,206" line (GSM8K), also "#### -$5", "#### $1,206.50", "#### 18 dollars", "#### 5 (apples)";
# "#### Final Answer: ..." is a markdown heading, and "#### 3 + 4" no plain number: neither is an answer line
_GSM8K_FINAL = re.compile(r"####[ \t]*([+-]?)[ \t]*\$?[ \t]*(-?\d[\d,]*(?:\.\d+)?)[ \t]*%?"
                          r"(?:[ \t]+[A-Za-z(][^\n=+*/^]*|[ \t]*\.)?[ \t]*$")
_CALCULATOR = re.compile(r"<<[^<>]*>>")
# AoPS answer style \textbf{(073)}: the choice wrapper is not part of the value
_CHOICE_WRAPPER = re.compile(r"\\textbf\{\s*\(?\s*([^{}()]*?)\s*\)?\s*\}")
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
# an R1-style answer block, <answer>42</answer>; its content is the answer part when there is no box
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# a number in scientific notation standing on its own in text ("3e6", "$4.5e33$."), which LaTeX reads as 4.5*e*33
_TEXT_SCIENTIFIC = re.compile(r"(?<![\w.])\d+(?:\.\d+)?[eE][+-]?\d+(?!\w|\.\d)")
# sentence punctuation just before the end of display or inline math: "\[ x \in [0, 1]. \]"
# (a "$" only when the mark touches it: in "$(1,2)$, $(3,4)$" the comma stands before an opening "$")
_PUNCT_BEFORE_MATH_END = re.compile(r"\s*[.,;:]\s*(\\\]|\\\))|\s*[.,;:](\$)")


def normalize_response(text: str) -> str:
    """Make GSM8K/AoPS-style text gradable: drop `<<a*b=c>>` calculator marks, unwrap `\\textbf{(N)}`, and turn a
    final `#### N` line, N a plain number ("1,206", "-3.5", with a sign, a `$` before it, or words such as
    "dollars" after it), into \\boxed{N} without the thousands commas."""
    text = _CHOICE_WRAPPER.sub(r"\1", _CALCULATOR.sub("", text))
    match = _GSM8K_FINAL.search(text.rstrip())
    if match:
        sign, number = match.group(1), match.group(2).replace(",", "")
        if sign == "-":  # "-$5": the sign before the currency sign
            number = number[1:] if number.startswith("-") else "-" + number
        text = text[:match.start()] + "\\boxed{" + number + "}"
    return text


def _boxes(text: str) -> tuple[list[str], bool]:
    """Contents of the complete boxes of `text` in order, and whether a box opened after the last complete one is
    never closed."""
    contents, pos, unclosed = [], 0, False
    while True:
        match = _BOX_OPEN.search(text, pos)
        if match is None:
            return contents, unclosed
        depth, j = 1, match.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth:  # never closed: nothing after it can be a complete box that encloses it
            return contents, True
        contents.append(text[match.end():j - 1])
        pos = j


def extract_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} (or \\fbox{...}) in `text`, braces matched; None if there is none
    or a box opened after it is never closed."""
    contents, unclosed = _boxes(text)
    return None if unclosed or not contents else contents[-1]


def final_answer(response: str) -> tuple[str, str | None]:
    """(kind, text) of a response's final answer, after `normalize_response`:

    ("boxed", content of the last complete box), ("unfinished", None) when a box or a `<think>` block is never
    closed or the last box is empty, or ("text", the answer part) when there is no box (graded by math-verify's
    own extraction): the content of the last complete `<answer>...</answer>` block, else the text after the last
    `</think>`, else the whole response."""
    text = normalize_response(response)
    opened = text.rfind(_THINK_OPEN)
    closed = text.rfind(_THINK_CLOSE)
    if opened >= 0 and closed < opened:
        return "unfinished", None
    if closed >= 0:
        text = text[closed + len(_THINK_CLOSE):]
    contents, unclosed = _boxes(text)
    if unclosed:
        return "unfinished", None
    if contents:
        content = contents[-1].strip()
        return ("boxed", content) if content else ("unfinished", None)
    blocks = _ANSWER_BLOCK.findall(text)
    if blocks:
        # the block's content alone: within its tags math-verify's extraction reads earlier expressions (on the
        # shared real run, 28 verdicts against the text after </think> were right and 2 wrong, review of session 57)
        text = blocks[-1]
    return ("text", text) if text.strip() else ("unfinished", None)


# ----------------------------------------------------------------------------------------------------------------
# Numbers


_EXACT_DIGITS = 50
_EXACT_TOL = Decimal("1e-40")  # relative, at 50 digits: equal exact numbers differ by rounding noise only
_DECIMALS_TOL = 1e-12  # two decimals: the same number up to float noise (1.5 \times 10^{-7} vs 0.00000015)


def _is_number(x) -> bool:
    from sympy import Expr

    return isinstance(x, Expr) and not x.free_symbols and bool(x.is_number)


# a number with more digits than this is not evaluated (9^{9^{9^9}} would take hours, 9^{9^9}'s 3.7e8 digits
# minutes): it is compared by its logarithm (`_huge_equal`). 10^7 digits evaluate in about 2 s
_MAX_LOG10 = 10**7


def _log10_size(x) -> float:
    """An estimate of log10 |x| for a numeric sympy expression, from floats only (inf when it overflows); exact
    enough to tell a number of a million digits from one of a few thousand. Other nodes: the largest argument's."""
    from sympy import factorial

    try:
        if x.is_Integer:
            return math.log10(abs(int(x))) if x != 0 else -math.inf
        if x.is_Rational:
            return math.log10(abs(x.p)) - math.log10(x.q)
        if x.is_Float:
            value = abs(float(x))
            return math.log10(value) if value else -math.inf
        if x.is_Pow:
            base, exp = _log10_size(x.base), _log10_size(x.exp)
            if exp > 300:
                return math.inf if base != 0 else 0.0
            return abs(base) * 10.0 ** exp if math.isfinite(base) else base
        if isinstance(x, factorial):
            n = 10.0 ** min(_log10_size(x.args[0]), 300)
            return n * math.log10(n) if n > 1 else 0.0
        if x.is_Mul or x.is_Add:
            return sum(max(_log10_size(a), 0.0) for a in x.args)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return math.inf
    return max((_log10_size(a) for a in x.args), default=0.0)


def _too_large(x) -> bool:
    """Whether evaluating the number `x` to 50 digits would mean computing over `_MAX_LOG10` digits."""
    return _log10_size(x) > _MAX_LOG10


def _in_math(text: str, pos: int) -> bool:
    """Whether position `pos` of `text` lies inside $...$, \\(...\\) or \\[...\\] (unescaped dollars counted)."""
    before = text[:pos]
    if len(re.findall(r"(?<!\\)\$", before)) % 2:
        return True
    opened = max(before.rfind("\\("), before.rfind("\\["))
    return opened > max(before.rfind("\\)"), before.rfind("\\]"))


def _plain_scientific(match: re.Match) -> str:
    """A number in scientific notation as a plain decimal (rule 5), except a signed exponent inside math: there
    "$2e-1$" is more likely 2e - 1 (Euler's e) than 0.2, and math-verify's own reading stays the only one."""
    signed = match.group(0).lower().split("e", 1)[1][:1] in "+-"
    if signed and _in_math(match.string, match.start()):
        return match.group(0)
    return answer_text(match.group(0))


def _holds_too_large(x) -> bool:
    """Whether a parsed answer (a sympy expression, tuple, set, ...) holds a power or factorial too large to
    evaluate (`_too_large`) anywhere inside it; False for text."""
    from sympy import Basic, factorial, preorder_traversal

    if not isinstance(x, Basic):
        return False
    return any((node.is_Pow or isinstance(node, factorial)) and node.is_number and _too_large(node)
               for node in preorder_traversal(x))


def _ln_abs(x, dps: int):
    """ln |x| of a numeric sympy expression as an mpmath number, from its structure alone (ln b^e = e ln b, with e's
    own value taken as exp(ln e) when e is too large to evaluate; ln n! = lgamma(n + 1); ln of a product, the sum),
    so no digit of a huge power is computed; None for a sum holding a too-large number (no cheap logarithm)."""
    import mpmath
    from sympy import Add, N, factorial, preorder_traversal

    if x.is_Pow:
        ln_base = _ln_abs(x.base, dps)
        if ln_base is None:
            return None
        if _too_large(x.exp):
            ln_exp = _ln_abs(x.exp, dps)
            return None if ln_exp is None else mpmath.exp(ln_exp) * ln_base * (1 if x.exp.is_positive else -1)
        return mpmath.mpf(str(N(x.exp, dps))) * ln_base
    if isinstance(x, factorial):
        n = x.args[0]
        return None if _too_large(n) else mpmath.loggamma(mpmath.mpf(str(N(n, dps))) + 1)
    if x.is_Mul:
        parts = [_ln_abs(arg, dps) for arg in x.args]
        return None if None in parts else mpmath.fsum(parts)
    if any(isinstance(node, Add) and _too_large(node) for node in preorder_traversal(x)):
        return None
    return mpmath.log(abs(mpmath.mpf(str(N(x, dps)))))


def _huge_equal(a, b) -> bool:
    """Equality of two numbers at least one of which is too large to evaluate (`_too_large`), as rule 5 compares
    exact numbers (to 50 significant digits): the same sign and |ln|a| - ln|b|| <= 1e-40, the logarithms taken from
    the expressions' structure (`_ln_abs`), no digit computed. Where the logarithm itself is beyond 1e30 (a tower
    such as 9^{9^{9^9}}: 1e-40 of it cannot be resolved), for a sum holding a too-large number, or where the
    assumptions cannot tell the sign, only the same expression is equal."""
    import mpmath

    if a == b:
        return True
    signs = [1 if x.is_positive else -1 if x.is_negative else 0 if x.is_zero else None for x in (a, b)]
    if None in signs or signs[0] != signs[1]:
        return False
    if signs[0] == 0:
        return True
    with mpmath.workdps(_EXACT_DIGITS + 60):
        logs = [_ln_abs(x, _EXACT_DIGITS + 60) for x in (a, b)]
        if None in logs or max(abs(v) for v in logs) > mpmath.mpf(10) ** 30:
            return False
        return bool(abs(logs[0] - logs[1]) <= mpmath.mpf("1e-40"))


def _scalars_equal(a, b, rel_tol: float) -> bool | None:
    """Exact or relative equality of two numeric sympy expressions; None if either is not a finite number. A number
    too large to evaluate (over ten million digits, `_too_large`) is compared by its logarithm (`_huge_equal`)."""
    from sympy import Float, N

    if _too_large(a) or _too_large(b):
        return _huge_equal(a, b)
    try:
        va, vb = N(a, _EXACT_DIGITS), N(b, _EXACT_DIGITS)
        if not (va.is_finite and vb.is_finite):
            return None
        diff = abs(N(a - b, _EXACT_DIGITS))
        scale = max(abs(va), abs(vb))
        a_dec, b_dec = a.has(Float), b.has(Float)
        tol = (_DECIMALS_TOL if a_dec and b_dec else rel_tol) if (a_dec or b_dec) else float(_EXACT_TOL)
        return bool(diff <= tol * scale)
    except (TypeError, ValueError, ArithmeticError):
        return None


def solved_for(x) -> tuple:
    """(variable, right-hand side) of a one-variable equation such as ``Eq(x, 5)`` (from ``x = 5``); (None, x) for
    anything else, including equations whose left-hand side is not a single symbol."""
    from sympy import Eq

    if isinstance(x, Eq) and x.lhs.is_Symbol:
        return x.lhs, x.rhs
    return None, x


def numbers_equal(gold, pred, rel_tol: float = 5e-6) -> bool | None:
    """The numeric rule (module doc, rule 5) for two parsed answers; None when it does not apply (not numbers, or
    containers holding something else), so that math-verify decides."""
    from sympy import FiniteSet, Interval, Tuple

    if _is_number(gold) and _is_number(pred):
        return _scalars_equal(gold, pred, rel_tol)
    if isinstance(gold, Tuple) and isinstance(pred, Tuple):
        if not all(_is_number(x) for x in (*gold.args, *pred.args)):
            return None
        if len(gold.args) != len(pred.args):
            return False
        verdicts = [_scalars_equal(g, p, rel_tol) for g, p in zip(gold.args, pred.args, strict=True)]
        return None if None in verdicts else all(verdicts)
    if isinstance(gold, FiniteSet) and isinstance(pred, FiniteSet):
        if not all(_is_number(x) and x.is_real for x in (*gold.args, *pred.args)):
            return None
        if len(gold.args) != len(pred.args):
            return False
        key = lambda x: float(x.evalf())  # noqa: E731
        verdicts = [_scalars_equal(g, p, rel_tol) for g, p in zip(sorted(gold.args, key=key),
                                                                  sorted(pred.args, key=key), strict=True)]
        return None if None in verdicts else all(verdicts)
    if isinstance(gold, Interval) and isinstance(pred, Interval):
        if (gold.left_open, gold.right_open) != (pred.left_open, pred.right_open):
            return False
        ends = []
        for g, p in ((gold.start, pred.start), (gold.end, pred.end)):
            if g.is_infinite or p.is_infinite:
                ends.append(g == p)
            elif _is_number(g) and _is_number(p):
                ends.append(_scalars_equal(g, p, rel_tol))
            else:
                return None
        return None if None in ends else all(ends)
    return None


# ----------------------------------------------------------------------------------------------------------------
# The grader


logger = logging.getLogger(__name__)
# Python notation in gold answers (Minerva): "1./3" (a float literal) and numpy function names
_PY_FLOAT_POINT = re.compile(r"(\d)\.(?!\d)")
_NUMPY_PREFIX = re.compile(r"\bnp\.(?=[a-z])")


def _parse_boxed(text: str) -> list:
    """math-verify's parse of `text` as the content of a box (LaTeX, then plain expressions)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse("\\boxed{" + text + "}", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                 parsing_timeout=None)


def _parse_answer(text: str) -> list:
    """`_parse_boxed`, and when that finds no math object, the same for `text` in Python notation read as LaTeX
    (`_python_to_latex`)."""
    parsed = _parse_boxed(text)
    if _only_text(parsed):
        retry = _parse_boxed(_python_to_latex(text))
        if not _only_text(retry):
            return retry
    return parsed


def _only_text(parsed: list) -> bool:
    """Whether a parse holds no math object (empty, or strings only)."""
    return all(isinstance(p, str) for p in parsed)


def _python_to_latex(text: str) -> str:
    """Python notation as LaTeX: ``-1./3`` -> ``-1/3``, ``np.arcsin(10/13)`` -> ``\\arcsin(10/13)``."""
    return _NUMPY_PREFIX.sub(r"\\", _PY_FLOAT_POINT.sub(r"\1", text))


class _NoTimeoutWarning(logging.Filter):
    """math-verify warns once that its (signal-based) timeout is off; the grader has its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutWarning())


class Grader:
    """Is a response's final answer the gold answer? (module doc: the rules).

    Args:
        timeout_seconds: wall-clock limit per verdict (seconds; None = no limit); a verdict that takes longer is
            False and counted in `timeouts`. On the main thread the limit is kept by SIGALRM, which stops the
            verdict; on another thread (or while the caller's own interval timer runs) by a helper thread, which
            is abandoned, not stopped (rule 6).
        rel_tol: relative tolerance between a decimal and an exact number (rule 5).

    Calling it, `grader(response, answer) -> bool`, is thread-safe: the same verdict on any thread.
    """

    def __init__(self, timeout_seconds: float | None = 5, rel_tol: float = 5e-6):
        if timeout_seconds is not None and not timeout_seconds > 0:  # 0 would switch the timer off: no limit at all
            raise ValueError(f"timeout_seconds must be positive or None (no limit), got {timeout_seconds!r}")
        self.timeout_seconds = timeout_seconds
        self.rel_tol = rel_tol
        self.timeouts = 0  # verdicts that ran out of time (graded wrong), over this grader's life
        self._lock = threading.Lock()
        self._gold_cache: dict[str, list] = {}

    def gold(self, answer: str) -> list:
        """The parsed gold answer (math-verify objects), cached per distinct string.

        A gold in Python notation that LaTeX parsing does not read (Minerva's ``-1./3``, ``np.arcsin(10/13)``) is
        read again as ``-1/3``, ``\\arcsin(10/13)``. A gold that still parses only to text (no math object) is
        logged as a warning: only a response with the same text can match it."""
        if answer not in self._gold_cache:
            from math_verify import parse

            text = clean_answer(answer)
            parsed = _parse_answer(text)
            if not parsed:  # not LaTeX-parseable: compare as a plain string
                parsed = parse(text, parsing_timeout=None) or [text]
            if _only_text(parsed):
                logger.warning("gold answer %r parses only as text: only a response with the same text matches it",
                               answer)
            self._gold_cache[answer] = parsed
        return self._gold_cache[answer]

    def prediction(self, response: str) -> list:
        """The parsed final answer of `response` (empty when there is none: unfinished or unparseable); a boxed
        answer in Python notation is read as the gold is (`gold`)."""
        from math_verify import parse

        kind, text = final_answer(response)
        if kind == "unfinished":
            return []
        if kind == "boxed":
            return _parse_answer(clean_answer(text))
        # "\[ y \in [0, 1]. \]": a sentence's period before the end of the math would hide or cut the expression
        text = _PUNCT_BEFORE_MATH_END.sub(lambda m: " " + (m.group(1) or m.group(2)), drop_percent(text))
        parsed = parse(text, parsing_timeout=None)
        plain = _TEXT_SCIENTIFIC.sub(_plain_scientific, text)
        if plain != text:  # "3e6" as 3000000 beside math-verify's 3*e*6: either reading
            parsed = [*parsed, *parse(plain, parsing_timeout=None)]
        return parsed

    def _equal(self, gold, pred) -> bool:
        from math_verify import verify

        if _holds_too_large(gold) or _holds_too_large(pred):  # math-verify would evaluate it (rule 6)
            verdict = numbers_equal(gold, pred, self.rel_tol)  # numbers (and tuples, sets of them): by logarithms
            return bool(gold == pred) if verdict is None else verdict
        gold_var, gold_value = solved_for(gold)
        pred_var, pred_value = solved_for(pred)
        if gold_var is None or pred_var is None or gold_var == pred_var:  # "x = 5" is 5 for the number rule
            verdict = numbers_equal(gold_value, pred_value, self.rel_tol)
            if verdict is not None:
                return verdict
        return bool(verify([gold], [pred], timeout_seconds=None))

    def verdict(self, response: str, answer: str | int | float | None) -> bool:
        """The verdict without the timeout (runs in the calling thread). A gold answer that is a number (a JSON
        number, e.g. AMC23's 27.0) is read as its text (`answer_text`)."""
        if answer is None or not response:
            return False
        if not isinstance(answer, str):
            answer = answer_text(answer)
        pred = self.prediction(response)
        if not pred:
            return False
        return any(self._equal(g, p) for g, p in product(self.gold(answer), pred))

    def __call__(self, response: str, answer: str | int | float | None) -> bool:
        if self.timeout_seconds is None:
            return self.verdict(response, answer)
        if _alarm_free():
            return self._verdict_by_alarm(response, answer)
        return self._verdict_in_thread(response, answer)

    def _timed_out(self) -> bool:
        with self._lock:
            self.timeouts += 1
        return False

    def _verdict_by_alarm(self, response: str, answer: str | None) -> bool:
        """The verdict on the main thread, stopped by SIGALRM after `timeout_seconds` (the caller's handler and a
        stopped timer are put back)."""
        def on_alarm(signum, frame):
            raise _GradingTimeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        result: list[bool] = []
        try:
            signal.setitimer(signal.ITIMER_REAL, self.timeout_seconds)
            try:
                result.append(self.verdict(response, answer))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            return result[0]
        except _GradingTimeout:  # an alarm between the verdict's end and the timer's stop keeps the verdict
            return result[0] if result else self._timed_out()
        except Exception:  # math-verify's own policy: an error while grading means "not verified"
            return False
        finally:
            signal.signal(signal.SIGALRM, previous)

    def _verdict_in_thread(self, response: str, answer: str | None) -> bool:
        """The verdict in a helper thread, abandoned after `timeout_seconds` (Python cannot stop a thread: it
        finishes in the background, holding a share of the CPU until then)."""
        result: list[bool] = []

        def work() -> None:
            try:
                result.append(self.verdict(response, answer))
            except Exception:  # math-verify's own policy: an error while grading means "not verified"
                result.append(False)

        worker = threading.Thread(target=work, name="hicra-grader", daemon=True)
        worker.start()
        worker.join(self.timeout_seconds)
        if worker.is_alive():
            return self._timed_out()
        return bool(result and result[0])


class _GradingTimeout(BaseException):
    """Raised by the grader's SIGALRM handler; a BaseException, so that no `except Exception` in sympy or
    math-verify swallows it and goes on computing."""


def _alarm_free() -> bool:
    """Whether the grader may time a verdict with SIGALRM: on the main thread of a platform that has it, with no
    interval timer of the caller's running."""
    return (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0
            and signal.getsignal(signal.SIGALRM) is not None)  # None: a handler set from C, which Python cannot put back


# ----------------------------------------------------------------------------------------------------------------
# Results


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
    """Grade `items` (each with id, answer, responses, optional benchmark) -> results dict (see module doc);
    `timeouts` lists the (item id, response index) whose verdict ran out of time and was graded wrong (rule 6),
    each also logged as a warning."""
    from tqdm import tqdm

    grader = grader or Grader()
    for it in items:  # pass@k of an item without samples is undefined: say which item, before any grading
        if not it["responses"]:
            raise ValueError(f"item {it['id']!r} has no responses (pass@k needs at least one)")
    graded, timeouts = [], []
    total = sum(len(it["responses"]) for it in items)
    with tqdm(total=total, desc="grading", unit="resp", disable=None if progress else True) as bar:
        for it in items:
            correct = []
            for i, response in enumerate(it["responses"]):
                before = grader.timeouts
                correct.append(grader(response, it["answer"]))
                if grader.timeouts > before:  # graded wrong for want of time: said, never silent
                    timeouts.append({"id": it["id"], "response": i})
                    logger.warning("grading timed out after %s s (graded wrong): item %r, response %d",
                                   grader.timeout_seconds, it["id"], i)
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
            "timeouts": timeouts, "items": graded}


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
