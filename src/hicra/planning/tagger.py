"""Find strategic-gram occurrences in text and turn them into per-token planning masks.

Matching rules (docs/planning.md):
  * case-folded; apostrophe look-alikes (' ’ ‘ ʼ) are one character;
  * contraction apostrophes are optional, so "let's" matches the paper's "lets" and vice versa
    (an apostrophe may appear or not before an "s" that follows a letter, and between "n" and "t");
  * any run of whitespace in the text matches the single space of a phrase;
  * word boundaries: a phrase that starts (ends) with a Latin letter or digit does not match right after (before)
    another Latin letter or digit, so "so" never matches inside "also"; combining marks and invisible format
    characters (soft hyphen, zero-width space, ...) after a Latin letter belong to its word, so no "so" in
    decomposed "söme" or in "al\u00adso"; any other character is a boundary, so a phrase next to CJK text matches
    ("所以wait，" holds "wait"; language mixing is common in R1-style traces);
  * occurrences for counting (`char_spans`, `spans`, semantic entropy): leftmost-longest, non-overlapping:
    scanning left to right, the first position where some phrase matches wins, and there the longest phrase wins
    ("so again" beats "so"); scanning resumes after it;
  * occurrences for masks (`mask_spans`, every token mask): all occurrences, overlapping ones included (the
    longest match at every position), merged into their union: in "we can use the fact that" both "we can use"
    and "use the fact that" are planning;
  * empty text gives no spans.

Token masks: a token is planning iff its character span overlaps an occurrence (`start < span_end` and
`end > span_start`), i.e. it is part of any occurrence. From text, the character spans are the tokenizer's offsets. From token ids, every vocabulary
id is turned once into the bytes it decodes to (byte-level BPE, SentencePiece/Metaspace with byte fallback,
WordPiece, BPE with an end-of-word suffix such as "</w>", no decoder; otherwise the tokenizer's own per-token
string, with a warning); a batch is joined into one string with a NUL separator, one compiled regex runs over it,
and character spans are mapped back to tokens with `numpy.searchsorted`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from hicra.fileio import lone_surrogate
from hicra.planning.lexicon import (
    APOSTROPHES,
    COMBINING_MARKS,
    FORMAT_CHARS,
    Lexicon,
    Phrase,
    fold,
    optional_apostrophe,
    phrase_key,
)

_SEP = b"\x00"  # separates sequences (and stands for special tokens): no phrase can match across it


@dataclass(frozen=True)
class Span:
    """One strategic-gram occurrence: characters `text[start:end]` match lexicon phrase `phrase`."""

    start: int
    end: int
    phrase: str
    category: str


# --- the pattern ----------------------------------------------------------------------------------------

def _units(key: str) -> list[str]:
    """Split a phrase key into regex units (one per character, apostrophe-optional letters merged)."""
    units = []
    for i, ch in enumerate(key):
        prev = key[i - 1] if i else ""
        if ch == " ":
            units.append(r"\s+")
        elif ch == "'":
            units.append(f"[{APOSTROPHES}]")
        elif ch in "st" and optional_apostrophe(prev, ch):
            units.append(f"[{APOSTROPHES}]?{ch}")  # the contraction positions of `phrase_key`
        else:
            units.append(re.escape(ch))
    return units


# Word characters for phrase boundaries: Latin letters (ASCII, Latin-1, Latin Extended A/B and Additional, after
# case folding) and ASCII digits. CJK, Cyrillic, punctuation, spaces and NUL are boundaries.
_LATIN_WORD = "0-9a-zA-Z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_LATIN_WORD_RE = re.compile(f"[{_LATIN_WORD}]")
# Combining marks and invisible format characters (soft hyphen, zero-width space, ...) right after a Latin letter
# belong to its word: "so" is not in "so\u0308me" (decomposed "söme") nor in "al\u00adso".
_ATTACHED = COMBINING_MARKS + FORMAT_CHARS
_MAX_ATTACHED = 3  # runs up to this long are looked through before a phrase; a longer run blocks a phrase start
# The start boundary, checked after the phrase's first character (a Latin letter or digit): not right after a
# Latin letter or digit, nor after one followed by 1.._MAX_ATTACHED attached characters, nor after a longer run.
_START_BOUNDARY = (f"(?<![{_LATIN_WORD}].)"
                   + "".join(f"(?<![{_LATIN_WORD}][{_ATTACHED}]{{{k}}}.)" for k in range(1, _MAX_ATTACHED + 1))
                   + f"(?<![{_ATTACHED}]{{{_MAX_ATTACHED + 1}}}.)")
# The end boundary, after a phrase's last character (a Latin letter or digit): no Latin letter, digit or attached
# character follows.
_END_BOUNDARY = f"(?![{_LATIN_WORD}{_ATTACHED}])"
_APOS_UNIT = f"[{APOSTROPHES}]"
# after a phrase ending in "n": no contraction "'t" follows (with the apostrophe dropped, "cant" already fails the
# end boundary)
_NOT_CONTRACTION = f"(?!{_APOS_UNIT}t(?![{_LATIN_WORD}{_ATTACHED}]))"
_TRAILING_ATTACHED_RE = re.compile(f"[{_ATTACHED}]+$")


def _is_word_char(ch: str) -> bool:
    return _LATIN_WORD_RE.match(ch) is not None


def _ends_in_word(key: str) -> bool:
    """Whether a phrase key ends with a Latin letter or digit, or with marks / format characters attached to one."""
    return _is_word_char(_TRAILING_ATTACHED_RE.sub("", key)[-1:] or " ")


def build_pattern(keys: list[str]) -> re.Pattern:
    """One regex for all phrase keys: a trie of units, longer continuations tried before ending.

    Children of a trie node start with different characters, so at most one path can match and the engine's
    first success is the longest phrase starting at that position. One exception: an apostrophe `[APOS]` and an
    optional-apostrophe unit `[APOS]?s` (or `?t`) both match an apostrophe. The apostrophe unit is tried last: the
    other one matches one more character, and no continuation of the apostrophe unit starts with that letter
    (`phrase_key` drops such apostrophes), so the first success is still the longest ("charles's idea" beats
    "charles'"). The start boundary (`_START_BOUNDARY`) is checked after the first character, so that every
    alternative begins with a literal and `re` can skip positions whose character starts no phrase.
    """
    trie: dict = {}
    for key in keys:
        node = trie
        for unit in _units(key):
            node = node.setdefault(unit, {})
        node[""] = _END_BOUNDARY if _ends_in_word(key) else ""  # end marker: end boundary
        if key.endswith("n"):  # "n't" is one word under rule 2 ("can't" = "cant"): "we can" is not in "we can't"
            node[""] += _NOT_CONTRACTION

    def emit(node: dict, root: bool = False) -> str:
        alts = []
        for unit in sorted((u for u in node if u), key=lambda u: (u == _APOS_UNIT, u)):
            head = unit
            if root and _is_word_char(re.sub(r"\\", "", unit)[:1] or " "):
                head = unit + _START_BOUNDARY
            alts.append(head + emit(node[unit]))
        if "" in node:
            alts.append(node[""])  # ending here is tried last: longest match first
        if len(alts) == 1:
            return alts[0]
        return "(?:" + "|".join(alts) + ")"

    if not keys:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile(emit(trie, root=True))


# --- vocabulary ids -> bytes ----------------------------------------------------------------------------

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable-character table used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _tokenizer_spec(tokenizer) -> dict | None:
    """The fast tokenizer's JSON description (its `tokenizer.json`), or None for a slow tokenizer."""
    try:
        return json.loads(tokenizer.backend_tokenizer.to_str())
    except Exception:  # not a fast tokenizer: only the generic path is possible
        return None


def _decoder_types(spec: dict, part: str = "decoder") -> set[str]:
    """The component types of the spec's `part` ("decoder" or "pre_tokenizer"), nested sequences included."""
    types, stack = set(), [spec.get(part) or {}]
    while stack:
        d = stack.pop()
        types.add(d.get("type"))
        if d.get("type") == "Replace" and d.get("pattern", {}).get("String") == "▁":
            types.add("Metaspace")
        stack.extend(d.get("decoders") or d.get("pretokenizers") or [])
    return types


def _word_end_suffix(spec: dict) -> str:
    """The end-of-word suffix of the tokens ("</w>" for CLIP and OpenAI-GPT style BPE), or ""."""
    suffix = (spec.get("model") or {}).get("end_of_word_suffix") or ""
    stack = [spec.get("decoder") or {}]
    while stack and not suffix:
        d = stack.pop()
        if d.get("type") == "BPEDecoder":
            suffix = d.get("suffix") or ""
        stack.extend(d.get("decoders") or [])
    return suffix


_BYTE_FALLBACK_RE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def vocab_bytes(tokenizer) -> list[bytes]:
    """Bytes each vocabulary id decodes to, index = id; special tokens map to a NUL separator.

    Supported: fast tokenizers whose decoder is byte-level BPE, SentencePiece/Metaspace (with byte fallback),
    WordPiece, or BPE with an end-of-word suffix (BPEDecoder, or byte-level with the suffix as CLIP has it), or
    that have no decoder (a byte-level pre-tokenizer's tokens are then read as bytes, others as words joined by
    spaces). For any other tokenizer each token is decoded on its own,
    which loses what the decoder adds between tokens: a UserWarning says so."""
    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    spec = _tokenizer_spec(tokenizer)
    kinds = _decoder_types(spec) if spec is not None else set()
    no_decoder = spec is not None and not spec.get("decoder")
    if no_decoder and "ByteLevel" in _decoder_types(spec, "pre_tokenizer"):
        # a byte-level BPE saved without its decoder: its tokens are still the byte alphabet's ("Ġwait")
        kinds, no_decoder = kinds | {"ByteLevel"}, False
    suffix = _word_end_suffix(spec) if spec is not None else ""
    byte_decoder = {c: b for b, c in _bytes_to_unicode().items()} if "ByteLevel" in kinds else None
    if not (kinds & {"ByteLevel", "Metaspace", "WordPiece", "BPEDecoder"} or no_decoder):
        import warnings

        what = f"decoder {sorted(t for t in kinds if t)}" if spec is not None else "slow (Python) tokenizer"
        warnings.warn(f"planning masks from token ids: {type(tokenizer).__name__} ({what}) is not supported; each "
                      "token is decoded alone, so spaces between tokens may be lost and masks from ids may miss "
                      "phrases: tag text (token_mask(text)) instead", UserWarning, stacklevel=2)
    special = set(tokenizer.all_special_ids)
    added = {i: t for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    out: list[bytes] = []
    byte_fallback = "ByteFallback" in kinds
    for i, tok in enumerate(tokens):
        m = _BYTE_FALLBACK_RE.match(tok) if byte_fallback and tok else None
        if m:  # "<0x47>": one raw byte (checked first: some tokenizers register these as special tokens)
            out.append(bytes([int(m.group(1), 16)]))
            continue
        if tok is None or i in special or (i in added and added[i].special):
            out.append(_SEP)
            continue
        if i in added:  # added tokens are stored as plain text, not in the model's byte alphabet
            out.append(added[i].content.encode("utf-8"))
            continue
        word_end = b""
        if suffix and tok.endswith(suffix):  # "wait</w>": "wait" and the end of a word, a space when decoded
            tok, word_end = tok[: -len(suffix)], b" "
        if byte_decoder is not None:
            try:
                out.append(bytes(byte_decoder[c] for c in tok) + word_end)
            except KeyError:
                out.append(tok.encode("utf-8") + word_end)
        elif "Metaspace" in kinds:
            out.append(tok.replace("▁", " ").encode("utf-8"))
        elif "WordPiece" in kinds:
            out.append(tok[2:].encode("utf-8") if tok.startswith("##") else (" " + tok).encode("utf-8"))
        elif "BPEDecoder" in kinds:
            out.append(tok.encode("utf-8") + word_end)
        elif no_decoder:  # the tokenizer joins tokens with a space
            out.append((" " + tok).encode("utf-8"))
        else:
            out.append(tokenizer.convert_tokens_to_string([tok]).encode("utf-8") + word_end)
    return out


# --- the tagger -----------------------------------------------------------------------------------------

def overlap_mask(tok_start: np.ndarray, tok_end: np.ndarray, span_start: np.ndarray,
                  span_end: np.ndarray) -> np.ndarray:
    """mask[i] = token [tok_start[i], tok_end[i]) overlaps some span; spans sorted and disjoint.

    The first span ending after the token's start is the only candidate: it overlaps iff it starts before
    the token's end. Empty tokens overlap nothing.
    """
    if len(span_start) == 0:
        return np.zeros(len(tok_start), dtype=bool)
    idx = np.searchsorted(span_end, tok_start, side="right")
    has = idx < len(span_end)
    starts = span_start[np.minimum(idx, len(span_end) - 1)]
    return has & (starts < tok_end) & (tok_end > tok_start)


def _as_id_array(seq: Any) -> np.ndarray:
    if hasattr(seq, "detach"):  # torch tensor
        seq = seq.detach().cpu().numpy()
    if isinstance(seq, (str, bytes)) or (isinstance(seq, (list, tuple)) and any(isinstance(x, str) for x in seq)):
        raise TypeError("expected token-id sequences (lists of ints, numpy arrays or tensors), got text; pass text "
                        "to token_mask(text), encode(text) or planning_ratio(texts)")
    arr = np.asarray(seq)
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise TypeError(f"expected token ids (integers), got an array of {arr.dtype}")
    if arr.ndim == 0:
        raise TypeError("expected a list of token-id sequences, got a single id where a sequence should be (one "
                        "flat sequence of ids? pass [ids], or use token_mask(ids))")
    return arr.astype(np.int64).reshape(-1)


def _is_one_id_sequence(seq: Any) -> bool:
    """A 1-D array or tensor, or a non-empty list/tuple of integers: one token-id sequence, not a batch."""
    if hasattr(seq, "ndim") and hasattr(seq, "shape"):  # numpy array, torch tensor
        return seq.ndim == 1
    return (isinstance(seq, (list, tuple)) and len(seq) > 0
            and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in seq))


class PlanningTagger:
    """Tag strategic-gram occurrences in text; with a tokenizer, per-token planning masks."""

    def __init__(self, lexicon: Lexicon | str = "paper", tokenizer=None):
        self.lexicon = Lexicon.resolve(lexicon)
        self.pattern = build_pattern([p.key for p in self.lexicon.phrases])
        self.tokenizer = tokenizer  # (the setter resets the per-vocabulary tables)

    @property
    def tokenizer(self):
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._vocab: list[bytes] | None = None
        self._vocab_len: np.ndarray | None = None
        self._vocab_flat: np.ndarray | None = None  # all vocabulary bytes, concatenated
        self._vocab_off: np.ndarray | None = None  # where each id's bytes start in _vocab_flat
        self._ws_only: np.ndarray | None = None

    # --- text ---------------------------------------------------------------------------------------
    def char_spans(self, text: str) -> np.ndarray:
        """Occurrences as an int64 array [n, 2] of (start, end) character offsets, sorted, disjoint."""
        if not text:
            return np.zeros((0, 2), dtype=np.int64)
        pos = [m.span() for m in self.pattern.finditer(fold(text))]
        return np.asarray(pos, dtype=np.int64).reshape(-1, 2)

    def mask_spans(self, text: str) -> np.ndarray:
        """The union of ALL occurrences, overlapping ones included, as an int64 array [n, 2] of sorted, disjoint
        (start, end) character ranges: what token masks are built from (a token is planning if it is part of any
        occurrence). At every position the longest phrase that starts there is found; a shorter phrase starting
        at the same position lies inside it."""
        if not text:
            return np.zeros((0, 2), dtype=np.int64)
        folded, search = fold(text), self.pattern.search
        merged: list[list[int]] = []
        match = search(folded)
        while match is not None:
            start, end = match.span()
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
            match = search(folded, start + 1)
        return np.asarray(merged, dtype=np.int64).reshape(-1, 2)

    def spans(self, text: str) -> list[Span]:
        """Every occurrence with the lexicon phrase it matches and that phrase's category."""
        out = []
        for start, end in self.char_spans(text).tolist():
            phrase: Phrase | None = self.lexicon.get(text[start:end])
            if phrase is None:  # cannot happen if the pattern and `phrase_key` agree
                raise AssertionError(f"matched {text[start:end]!r} has no phrase (key {phrase_key(text[start:end])!r})")
            out.append(Span(start, end, phrase.text, phrase.category))
        return out

    # --- tokens -------------------------------------------------------------------------------------
    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("token masks need a tokenizer: PlanningTagger(lexicon, tokenizer=...)")
        return self.tokenizer

    def token_mask(self, text_or_token_ids) -> np.ndarray:
        """bool per token. A string is tokenized (no special tokens) and aligned by its offsets; a sequence of
        ids is decoded through the vocabulary byte table (same as `token_masks`)."""
        if isinstance(text_or_token_ids, str):
            return self.encode(text_or_token_ids)[1]
        return self.token_masks([text_or_token_ids])[0]

    def encode(self, text: str) -> tuple[list[int], np.ndarray]:
        """(token ids of `text`, no special tokens; their planning mask, aligned by the tokenizer's offsets).

        Raises ValueError for text holding a lone surrogate (not Unicode text; tokenizers cannot take it)."""
        tok = self._require_tokenizer()
        bad = lone_surrogate(text)
        if bad:
            raise ValueError(f"text holds a lone surrogate ({bad}): not Unicode text")
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2).copy()
        # A whitespace-only token whose offsets cover no whitespace stands for a space the tokenizer added
        # (SentencePiece's prefix "▁" is reported at (0, 1)): it covers no character of the text.
        _, _, ws_only = self._vocab_table()
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        for i in np.nonzero(ws_only[np.clip(ids, 0, len(ws_only) - 1)])[0]:
            s, e = offsets[i]
            if not text[s:e].isspace():
                offsets[i, 1] = s
        spans = self.mask_spans(text)
        return list(enc["input_ids"]), overlap_mask(offsets[:, 0], offsets[:, 1], spans[:, 0], spans[:, 1])

    def _vocab_table(self):
        if self._vocab is None:
            table = vocab_bytes(self._require_tokenizer())
            table.append(_SEP)  # the last entry: separator / any out-of-range id (padding ids like -100)
            self._vocab = table
            self._vocab_len = np.fromiter(map(len, table), dtype=np.int64, count=len(table))
            self._vocab_flat = np.frombuffer(b"".join(table), dtype=np.uint8)
            self._vocab_off = np.cumsum(self._vocab_len) - self._vocab_len
            self._ws_only = np.array([b != _SEP and len(b) > 0 and b.isspace() for b in table], dtype=bool)
        return self._vocab, self._vocab_len, self._ws_only

    def token_masks(self, sequences) -> list[np.ndarray]:
        """Planning masks for many token-id sequences at once (the trainer path).

        `sequences`: a list of id sequences (lists, numpy arrays, tensors) or a 2-D array/tensor (one row per
        sequence; padding ids are ordinary ids, pass the unpadded rows to ignore them).
        Returns one bool array per sequence, of the same length.
        Raises TypeError for one flat sequence of ids (a list of ints, a 1-D array or tensor: use `token_mask(ids)`
        or `token_masks([ids])`) and for text.
        """
        rows = [_as_id_array(s) for s in sequences]
        if not rows:
            return []
        ids, real = self._join(rows)
        mask = self._mask_of_ids(ids)
        if mask is None:  # some row is not valid UTF-8: redo row by row, the bad rows token by token
            return [self._row_mask(r) for r in rows]
        return np.split(mask[real], np.cumsum([len(r) for r in rows])[:-1])

    def padded_masks(self, token_ids, response_mask):
        """[B, T] planning mask of a right-padded batch (torch tensors, as trainers hold it), False wherever
        `response_mask` is False; on `response_mask`'s device.

        Each row is tagged up to its last response token, so tokens masked out inside a response (e.g. tool output
        in a multi-turn rollout) keep their place in the text; they come back False."""
        import torch

        rmask = response_mask.bool()
        if rmask.numel() == 0:
            return torch.zeros_like(rmask)
        positions = torch.arange(1, rmask.size(-1) + 1, device=rmask.device)
        lengths = (rmask * positions).amax(-1).tolist()  # last response token + 1; 0 for an empty row
        seqs = [row[:n] for row, n in zip(token_ids.tolist(), lengths, strict=True)]
        out = np.zeros(tuple(rmask.shape), dtype=bool)
        for i, m in enumerate(self.token_masks(seqs)):
            out[i, : len(m)] = m
        return torch.from_numpy(out).to(rmask.device) & rmask

    def _row_mask(self, row: np.ndarray) -> np.ndarray:
        ids, _ = self._join([row])
        mask = self._mask_of_ids(ids)
        if mask is None:
            mask = self._mask_of_ids(ids, by_token=True)
        return mask[:-1]

    def _join(self, rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """All ids with a separator after each row (ids outside the vocabulary become separators too), and
        the mask of the positions that are real tokens."""
        table, _, _ = self._vocab_table()
        sep = len(table) - 1
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        ids = np.full(int(lengths.sum()) + len(rows), sep, dtype=np.int64)
        real = np.ones(len(ids), dtype=bool)
        real[np.cumsum(lengths + 1) - 1] = False
        flat = np.concatenate(rows) if len(rows) > 1 else rows[0]
        ids[real] = np.where((flat >= 0) & (flat < sep), flat, sep)
        return ids, real

    def _mask_of_ids(self, ids: np.ndarray, by_token: bool = False) -> np.ndarray | None:
        """Planning mask of a joined id array; None if its bytes are not valid UTF-8 (unless `by_token`)."""
        table, table_len, _ = self._vocab_table()
        if by_token:
            # each token decoded on its own: exact for the tokens, loses characters cut between tokens
            pieces = [table[i].decode("utf-8", errors="replace") for i in ids.tolist()]
            char_len = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
            tok_end = np.cumsum(char_len)
            tok_start = tok_end - char_len
            text = "".join(pieces)
        else:
            byte_len = table_len[ids]
            byte_end = np.cumsum(byte_len)
            byte_start = byte_end - byte_len
            # gather the bytes of all tokens with numpy (one index array) instead of a Python-level join
            src = np.repeat(self._vocab_off[ids] - byte_start, byte_len) + np.arange(int(byte_end[-1]))
            buf = self._vocab_flat[src].tobytes()
            text = buf.decode("utf-8", errors="replace")
            raw = np.frombuffer(buf, dtype=np.uint8)
            lead = (raw & 0xC0) != 0x80
            if len(text) != int(lead.sum()):
                return None
            # valid UTF-8: char k starts at the k-th lead byte; a token covers the chars of its first..last byte
            char_of_byte = np.cumsum(lead) - 1
            nonempty = byte_len > 0
            tok_start = np.where(nonempty, char_of_byte[np.minimum(byte_start, len(raw) - 1)], 0)
            tok_end = np.where(nonempty, char_of_byte[np.maximum(byte_end - 1, 0)] + 1, 0)
        spans = self.mask_spans(text)
        return overlap_mask(tok_start, tok_end, spans[:, 0], spans[:, 1])

    def planning_ratio(self, sequences) -> float:
        """Share of planning tokens over all tokens of `sequences` (the metrics' `planning_ratio`): token-id
        sequences (as `token_masks` takes), one id sequence (a list of ints, a 1-D array or tensor), or text (one
        string or a list of strings, tokenized with the tagger's tokenizer, no special tokens). `planning_fraction`
        is the same method under its pre-v2 name.

        Raises TypeError for anything else (naming what is expected), ValueError for text without a tokenizer."""
        if isinstance(sequences, str) or _is_one_id_sequence(sequences):
            sequences = [sequences]
        if isinstance(sequences, (list, tuple)) and sequences and all(isinstance(s, str) for s in sequences):
            masks = [self.encode(text)[1] for text in sequences]
        else:
            masks = self.token_masks(sequences)
        total = sum(len(m) for m in masks)
        return float(sum(int(m.sum()) for m in masks) / total) if total else 0.0

    planning_fraction = planning_ratio  # the pre-v2 name (one name per concept: planning_ratio)
