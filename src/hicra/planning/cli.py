"""`hicra grams`: tag text with a strategic-gram lexicon, show a lexicon, mine one from a corpus."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from hicra.errors import InputError
from hicra.fileio import load_tokenizer

_SURROGATE_RE = re.compile("[\udc80-\udcff]")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "grams", help="planning tokens: tag text, show or mine strategic-gram lexicons",
        description="Strategic grams (planning phrases): tag text, show a lexicon, mine a lexicon from a corpus.")
    sub = parser.add_subparsers(dest="grams_cmd", metavar="CMD", required=True)

    tag = sub.add_parser("tag", help="strategic-gram spans of texts, as JSON lines",
                         description="Print one JSON line per text: its strategic-gram spans (character offsets, "
                         "phrase, category, matched text). With --summary, one JSON object of totals instead.")
    tag.add_argument("text", nargs="*", help="texts to tag (or use --file)")
    tag.add_argument("--lexicon", default="paper", help="preset name or lexicon file (default: paper)")
    tag.add_argument("--file", help="JSON lines corpus to tag")
    tag.add_argument("--text-field", help="dotted field path of the text in --file ('*' = every key)")
    tag.add_argument("--correct-field", help="only tag texts whose field is true (dotted path, '*' allowed)")
    tag.add_argument("--tokenizer", help="a local Hugging Face tokenizer directory: also count planning tokens")
    tag.add_argument("--summary", action="store_true", help="print totals (planning share, counts, entropy)")
    tag.set_defaults(func=_tag)

    show = sub.add_parser("show", help="print a lexicon", description="Print a lexicon by category.")
    show.add_argument("lexicon", help="preset name or lexicon file")
    show.add_argument("--json", action="store_true", help="print the lexicon file instead")
    show.set_defaults(func=_show)

    cmp = sub.add_parser("compare", help="overlap of two lexicons (phrases, and occurrences in a corpus)",
                         description="Shared phrases of two lexicons; with --file, how far their planning "
                         "characters in the corpus overlap.")
    cmp.add_argument("a", help="preset name or lexicon file")
    cmp.add_argument("b", help="preset name or lexicon file")
    cmp.add_argument("--file", help="JSON lines corpus")
    cmp.add_argument("--text-field", help="dotted field path of the text in --file ('*' = every key)")
    cmp.add_argument("--correct-field", help="only texts whose field is true")
    cmp.set_defaults(func=_compare)

    mine = sub.add_parser(
        "mine", help="mine a lexicon from successful solutions",
        description="n-grams of successful solutions -> all-MiniLM-L6-v2 embeddings -> agglomerative clusters "
        "-> keep the top clusters by cluster document frequency (docs/planning.md).")
    mine.add_argument("corpus", help="JSON lines corpus")
    mine.add_argument("--text-field", required=True, help="dotted field path of the solution text ('*' = any key)")
    mine.add_argument("--correct-field", help="dotted path of a boolean: use only solutions where it is true")
    mine.add_argument("--question-field", help="dotted path of the problem statement: n-grams that also occur "
                      "in it are not counted for that solution")
    mine.add_argument("--n", default="3-5", help="n-gram lengths, 'A-B' or 'N' (default 3-5)")
    mine.add_argument("--top", type=float, default=0.2, help="fraction of clusters to keep (default 0.2)")
    mine.add_argument("--min-df", type=int, default=5, help="minimum document frequency of an n-gram, >= 1 (default 5)")
    mine.add_argument("--max-candidates", type=int, default=4000, help="most frequent n-grams embedded, >= 1 (4000)")
    mine.add_argument("--distance", type=float, default=0.3,
                      help="cosine distance at which the cluster tree is cut (default 0.3)")
    mine.add_argument("--name", help="lexicon name (default: the output file's stem)")
    mine.add_argument("--out", required=True, help="lexicon JSON to write")
    mine.add_argument("--report", help="report JSON to write (default: OUT with .report.json)")
    mine.set_defaults(func=_mine)


# --- tag ------------------------------------------------------------------------------------------------

def _tag(args) -> int:
    import numpy as np

    from hicra.planning.lexicon import CATEGORIES, Lexicon
    from hicra.planning.metrics import WORD_PROXY, semantic_entropy
    from hicra.planning.mining import read_corpus
    from hicra.planning.tagger import PlanningTagger, overlap_mask

    lexicon = Lexicon.resolve(args.lexicon)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    tagger = PlanningTagger(lexicon, tokenizer)
    if args.file:
        if not args.text_field:
            raise InputError("--file needs --text-field")
        if args.text:
            raise InputError("give texts or --file, not both")
        items = ((doc.source, doc.text) for doc, ok in
                 read_corpus(args.file, args.text_field, args.correct_field) if ok)
    else:
        if not args.text:
            raise InputError("nothing to tag: give texts or --file")
        for i, t in enumerate(args.text):
            if _SURROGATE_RE.search(t):  # undecodable bytes on the command line arrive as lone surrogates
                raise InputError(f"text argument {i + 1} is not UTF-8")
        items = ((str(i), t) for i, t in enumerate(args.text))

    totals = {"texts": 0, "chars": 0, "planning_chars": 0, "words": 0, "planning_words": 0,
              "tokens": 0, "planning_tokens": 0}
    counts: dict[str, int] = {}
    by_category = dict.fromkeys(CATEGORIES, 0)
    out = sys.stdout
    for source, text in items:
        spans = tagger.spans(text)
        if not args.summary:
            out.write(json.dumps({"source": source, "spans": [
                {"start": s.start, "end": s.end, "phrase": s.phrase, "category": s.category,
                 "match": text[s.start:s.end]} for s in spans]}, ensure_ascii=False) + "\n")
            continue
        totals["texts"] += 1
        totals["chars"] += len(text)
        spans_arr = tagger.mask_spans(text)  # the union of all occurrences, overlaps included (as token masks)
        totals["planning_chars"] += int((spans_arr[:, 1] - spans_arr[:, 0]).sum())
        words = np.array([m.span() for m in WORD_PROXY.finditer(text)], dtype=np.int64).reshape(-1, 2)
        totals["words"] += len(words)
        totals["planning_words"] += int(overlap_mask(words[:, 0], words[:, 1], spans_arr[:, 0],
                                                     spans_arr[:, 1]).sum())
        if tokenizer is not None:
            mask = tagger.token_mask(text)
            totals["tokens"] += len(mask)
            totals["planning_tokens"] += int(mask.sum())
        for s in spans:
            counts[s.phrase] = counts.get(s.phrase, 0) + 1
            by_category[s.category] += 1
    if args.summary:
        def share(a, b):
            return round(totals[a] / totals[b], 5) if totals[b] else None

        summary = {"lexicon": lexicon.name, "phrases": len(lexicon), **totals,
                   "planning_char_share": share("planning_chars", "chars"),
                   "planning_word_share": share("planning_words", "words"),
                   "planning_token_share": share("planning_tokens", "tokens") if tokenizer else None,
                   "occurrences": sum(counts.values()), "distinct_phrases_seen": len(counts),
                   "semantic_entropy": round(semantic_entropy(counts), 4), "by_category": by_category,
                   "top_phrases": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:15]}
        out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return 0


# --- show -----------------------------------------------------------------------------------------------

def _show(args) -> int:
    from hicra.planning.lexicon import CATEGORIES, Lexicon

    lexicon = Lexicon.resolve(args.lexicon)
    if args.json:
        sys.stdout.write(lexicon.to_json())
        return 0
    print(f"{lexicon.name}: {len(lexicon)} phrases")
    if lexicon.description:
        print(lexicon.description)
    for cat in CATEGORIES:
        texts = [p.text for p in lexicon if p.category == cat]
        if texts:
            print(f"\n{cat} ({len(texts)}):")
            print("  " + "; ".join(texts))
    return 0


# --- compare --------------------------------------------------------------------------------------------

def _compare(args) -> int:
    from hicra.planning.lexicon import Lexicon
    from hicra.planning.mining import read_corpus
    from hicra.planning.tagger import PlanningTagger

    a, b = Lexicon.resolve(args.a), Lexicon.resolve(args.b)
    shared = [p.text for p in a if p.text in b]
    # a phrase of A "contains" B when B's tagger finds an occurrence inside it
    tb, ta = PlanningTagger(b), PlanningTagger(a)
    a_contains_b = [p.text for p in a if tb.spans(p.text)]
    b_contains_a = [p.text for p in b if ta.spans(p.text)]
    out = {"a": a.name, "b": b.name, "size_a": len(a), "size_b": len(b), "shared": len(shared),
           "shared_phrases": shared, "a_containing_b": len(a_contains_b), "b_containing_a": len(b_contains_a),
           "a_containing_b_examples": a_contains_b[:20]}
    if args.file:
        if not args.text_field:
            raise InputError("--file needs --text-field")
        n_a = n_b = n_both = n_chars = 0
        for doc, ok in read_corpus(args.file, args.text_field, args.correct_field):
            if not ok:
                continue
            ma = _char_mask(ta, doc.text)
            mb = _char_mask(tb, doc.text)
            n_a += int(ma.sum())
            n_b += int(mb.sum())
            n_both += int((ma & mb).sum())
            n_chars += len(doc.text)
        union = n_a + n_b - n_both
        out.update(chars=n_chars, planning_chars_a=n_a, planning_chars_b=n_b, planning_chars_both=n_both,
                   jaccard=round(n_both / union, 4) if union else None,
                   share_of_a_also_b=round(n_both / n_a, 4) if n_a else None,
                   share_of_b_also_a=round(n_both / n_b, 4) if n_b else None)
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


def _char_mask(tagger, text: str):
    import numpy as np

    mask = np.zeros(len(text), dtype=bool)
    for start, end in tagger.mask_spans(text).tolist():
        mask[start:end] = True
    return mask


# --- mine -----------------------------------------------------------------------------------------------

def _parse_n(spec: str) -> tuple[int, int]:
    try:
        lo, _, hi = spec.partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
    except ValueError:
        raise InputError(f"--n must be 'A-B' or 'N', got {spec!r}") from None
    if not 1 <= lo_i <= hi_i:
        raise InputError(f"--n must satisfy 1 <= A <= B, got {spec!r}")
    return lo_i, hi_i


def _mine(args) -> int:
    from tqdm.auto import tqdm

    from hicra.fileio import check_writable, write_json
    from hicra.planning.lexicon import Lexicon
    from hicra.planning.mining import mine, read_corpus

    n_min, n_max = _parse_n(args.n)
    if not 0 < args.top <= 1:
        raise InputError(f"--top must be in (0, 1], got {args.top}")
    if not args.distance >= 0:  # scikit-learn's own bound, checked before the slow reading and embedding
        raise InputError(f"--distance must be >= 0, got {args.distance}")
    if args.min_df < 1:
        raise InputError(f"--min-df must be >= 1, got {args.min_df}")
    if args.max_candidates < 1:
        raise InputError(f"--max-candidates must be >= 1, got {args.max_candidates}")
    out = Path(args.out)
    report_path = Path(args.report) if args.report else out.with_name(out.stem + ".report.json")
    if out.resolve() == report_path.resolve():  # the report would replace the lexicon
        raise InputError("--report must name another file than --out", path=str(out), field="report")
    check_writable(out, "out")  # both before mining: a refusal replaces neither
    check_writable(report_path, "report")
    docs, seen = [], 0
    for doc, ok in tqdm(read_corpus(args.corpus, args.text_field, args.correct_field, args.question_field),
                        desc="reading", unit="text", file=sys.stderr,
                        disable=None):  # None: a bar on terminals only
        seen += 1
        if ok:
            docs.append(doc)
    if not docs:
        raise InputError("no successful solutions in the corpus", path=args.corpus)
    result = mine(docs, n_min=n_min, n_max=n_max, top=args.top, min_df=args.min_df,
                  max_candidates=args.max_candidates, distance=args.distance, name=args.name or out.stem,
                  category_lexicon=Lexicon.preset("paper"), exclude_question=bool(args.question_field),
                  progress=sys.stderr.isatty())
    result.report.update(corpus=str(args.corpus), texts_read=seen, text_field=args.text_field,
                         correct_field=args.correct_field, question_field=args.question_field)
    result.lexicon.save(out)
    write_json(report_path, result.report)
    rep = result.report
    print(f"{len(docs)} of {seen} texts used; {rep['n_candidates']} candidate n-grams, {rep['n_clusters']} "
          f"clusters, kept {rep.get('n_kept_clusters', 0)} -> {len(result.lexicon)} phrases")
    for c in [c for c in rep["clusters"] if c["kept"]][:10]:
        print(f"  #{c['rank']:<3} df={c['doc_freq']:<5} size={c['size']:<3} {'; '.join(c['examples'][:4])}")
    print(f"wrote {out} and {report_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="hicra")
    register(parser.add_subparsers(dest="verb"))
    a = parser.parse_args()
    raise SystemExit(a.func(a))
