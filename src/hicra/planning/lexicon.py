"""Strategic-gram lexicons: phrases with a category, a JSON file format, presets.

File format (`hicra-lexicon/1`), JSON (or the same structure in YAML, for `.yaml` / `.yml` files):

    {"format": "hicra-lexicon/1", "name": "paper", "description": "...",
     "phrases": [{"text": "let's try", "category": "branching"}, ...]}

A phrase entry may also be a bare string (category "other"). Categories: deduction, branching, backtracking,
verification, other. Two phrases are duplicates when their matching keys (`phrase_key`) are equal, so
"Let's check" and "lets check" are the same phrase. Presets live in `hicra/planning/presets/<name>.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hicra.errors import InputError
from hicra.fileio import lone_surrogate, read_json, read_yaml

FORMAT = "hicra-lexicon/1"
CATEGORIES = ("deduction", "branching", "backtracking", "verification", "other")

# Apostrophe look-alikes treated as one character: straight, right/left single quote, modifier letter.
APOSTROPHES = "'\u2019\u2018\u02bc"
_APOS_RE = re.compile(f"[{APOSTROPHES}]")
_WS_RE = re.compile(r"\s+")


# Characters that belong to the word of a Latin letter right before them (tagger word boundaries, mining words):
# the combining marks of the general-purpose combining blocks ("o" + U+0308 is "ö"; variation selectors too) and
# the invisible format characters (Unicode category Cf) of the Basic Multilingual Plane: soft hyphen, zero-width
# space, joiners, bidirectional controls, BOM, ... As regex character-class bodies.
COMBINING_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe00-\ufe0f\ufe20-\ufe2f"
FORMAT_CHARS = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
                "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb")


def optional_apostrophe(before: str, after: str) -> bool:
    """Whether an apostrophe between the characters `before` and `after` is a contraction apostrophe, optional in
    matching: before an "s" that follows a letter (`str.isalpha`: "let's" = "lets", "it's" = "its") and between "n"
    and "t" ("doesn't" = "doesnt", "can't" = "cant"), the two positions the paper's apostrophe-less list needs."""
    return (after == "s" and before.isalpha()) or (before == "n" and after == "t")


def fold(text: str) -> str:
    """Case-fold `text` character by character, keeping its length (so offsets stay valid).

    `str.casefold` is context-free; the rare characters whose folding is longer than one character ("ß" ->
    "ss") fall back to `str.lower`, or stay as they are.
    """
    folded = text.casefold()
    if len(folded) == len(text):
        return folded
    out = []
    for ch in text:
        f = ch.casefold()
        if len(f) != 1:
            f = ch.lower() if len(ch.lower()) == 1 else ch
        out.append(f)
    return "".join(out)


def phrase_key(text: str) -> str:
    """The matching key of a phrase or of a matched piece of text.

    Case-folded, apostrophe look-alikes made straight, contraction apostrophes dropped, runs of whitespace
    made one space, outer whitespace stripped. Two strings with the same key match each other.
    """
    text = _APOS_RE.sub("'", fold(text))
    if "'" in text:
        text = "".join(ch for i, ch in enumerate(text)
                       if not (ch == "'" and 0 < i < len(text) - 1 and optional_apostrophe(text[i - 1], text[i + 1])))
    return _WS_RE.sub(" ", text).strip()


@dataclass(frozen=True)
class Phrase:
    text: str
    category: str = "other"

    @property
    def key(self) -> str:
        return phrase_key(self.text)


def _as_phrase(item: Any, number: int, default_category: str = "other") -> Phrase:
    """`item` as a Phrase; ValueError "phrase NUMBER: ..." if it is none."""
    if isinstance(item, Phrase):
        return item
    if isinstance(item, str):
        return Phrase(item, default_category)
    if isinstance(item, Mapping):
        if "text" not in item:
            raise ValueError(f"phrase {number}: entry without 'text': {dict(item)!r}")
        return Phrase(item["text"], item.get("category", default_category))
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return Phrase(item[0], item[1])
    raise ValueError(f"phrase {number}: not a phrase (a string, an object with 'text', or a (text, category) "
                     f"pair): {item!r}")


class Lexicon:
    """An ordered, duplicate-free set of strategic grams with categories. Immutable: `merge` and `extend`
    return new lexicons."""

    def __init__(self, phrases: Iterable[Phrase | str | Mapping | tuple], name: str = "custom",
                 description: str = ""):
        self.name = str(name)
        self.description = str(description)
        items: list[Phrase] = []
        by_key: dict[str, Phrase] = {}
        for i, item in enumerate(phrases, start=1):  # phrase N counts from 1, as rows do in every message
            phrase = _as_phrase(item, i)
            if not isinstance(phrase.text, str):
                raise ValueError(f"phrase {i}: text must be a string, got {type(phrase.text).__name__}")
            bad = lone_surrogate(phrase.text)
            if bad:
                raise ValueError(f"phrase {i}: lone surrogate {bad} (not Unicode text)")
            if phrase.category not in CATEGORIES:
                raise ValueError(f"phrase {i} ({phrase.text!r}): unknown category {phrase.category!r}; "
                                 f"expected one of {', '.join(CATEGORIES)}")
            key = phrase.key
            if not key:
                raise ValueError(f"phrase {i}: empty phrase")
            if key in by_key:
                raise ValueError(f"phrase {i}: duplicate phrase {phrase.text!r} "
                                 f"(same as {by_key[key].text!r})")
            by_key[key] = phrase
            items.append(phrase)
        self.phrases: tuple[Phrase, ...] = tuple(items)
        self._by_key = by_key

    # --- container protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.phrases)

    def __iter__(self) -> Iterator[Phrase]:
        return iter(self.phrases)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and phrase_key(text) in self._by_key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lexicon) and self.phrases == other.phrases

    def __repr__(self) -> str:
        return f"Lexicon(name={self.name!r}, {len(self)} phrases)"

    def get(self, text: str) -> Phrase | None:
        """The lexicon phrase that `text` matches (by key), or None."""
        return self._by_key.get(phrase_key(text))

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.phrases]

    def category_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CATEGORIES, 0)
        for p in self.phrases:
            counts[p.category] += 1
        return counts

    # --- combining ----------------------------------------------------------------------------------
    def merge(self, other: Lexicon, name: str | None = None) -> Lexicon:
        """Union of two lexicons. A phrase in both keeps this lexicon's text and category."""
        extra = [p for p in other.phrases if p.key not in self._by_key]
        return Lexicon([*self.phrases, *extra], name=name or f"{self.name}+{other.name}",
                       description=self.description)

    def extend(self, phrases: Iterable[Phrase | str | Mapping | tuple], category: str = "other",
               name: str | None = None) -> Lexicon:
        """This lexicon plus new phrases (bare strings get `category`); a duplicate raises ValueError."""
        new = [_as_phrase(p, len(self) + i, category) for i, p in enumerate(phrases, start=1)]
        return Lexicon([*self.phrases, *new], name=name or self.name, description=self.description)

    # --- files --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "name": self.name, "description": self.description,
                "phrases": [{"text": p.text, "category": p.category} for p in self.phrases]}

    def to_json(self) -> str:
        """JSON text with one phrase per line (diff-friendly)."""
        head = {k: v for k, v in self.to_dict().items() if k != "phrases"}
        lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "phrases": [']
        rows = [json.dumps({"text": p.text, "category": p.category}, ensure_ascii=False)
                for p in self.phrases]
        lines.append(",\n".join(f"  {r}" for r in rows))
        lines.append("]}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        from hicra.fileio import write_text

        write_text(path, self.to_json())
        return Path(path)

    @classmethod
    def from_dict(cls, data: Any, *, path: str | None = None) -> Lexicon:
        """Build a lexicon from the file structure; any problem raises InputError naming `path`."""
        if isinstance(data, list):  # a bare list of phrases is accepted too
            data = {"format": FORMAT, "phrases": data}
        if not isinstance(data, dict):
            raise InputError(f"a lexicon must be a JSON object, got {type(data).__name__}", path=path)
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise InputError(f"unknown lexicon format {fmt!r} (expected {FORMAT!r})", path=path,
                             field="format")
        phrases = data.get("phrases")
        if not isinstance(phrases, list):
            raise InputError("missing or non-list 'phrases'", path=path, field="phrases")
        for key in ("name", "description"):
            bad = lone_surrogate(data[key]) if isinstance(data.get(key), str) else None
            if bad:
                raise InputError(f"lone surrogate {bad} (not Unicode text)", path=path, field=key)
        try:
            return cls(phrases, name=data.get("name") or (Path(path).stem if path else "custom"),
                       description=data.get("description", ""))
        except ValueError as exc:
            raise InputError(str(exc), path=path, field="phrases") from None

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        """Read a lexicon file (JSON, or YAML for .yaml/.yml). Bad files raise InputError."""
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            data = read_yaml(path, "lexicon")
        else:
            data = read_json(path, "lexicon", objects=False)  # from_dict names a value of the wrong type
        return cls.from_dict(data, path=str(path))

    # --- presets ------------------------------------------------------------------------------------
    @staticmethod
    def presets() -> list[str]:
        """Names of the presets shipped with the package."""
        folder = resources.files("hicra.planning") / "presets"
        # "<name>.json" only: "<name>.report.json" and other dotted names are not lexicons
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json") and p.name.count(".") == 1)

    @classmethod
    def preset(cls, name: str) -> Lexicon:
        """A shipped lexicon: "paper" (arXiv 2509.03646's list), "gsm8k" (mined), "lab" (mined by the lab v2 warm start, frozen)."""
        res = resources.files("hicra.planning") / "presets" / f"{name}.json"
        if not res.is_file():
            raise InputError(f"unknown lexicon preset {name!r}; available: {', '.join(cls.presets())}")
        return cls.from_dict(json.loads(res.read_text(encoding="utf-8")), path=f"preset:{name}")

    @classmethod
    def resolve(cls, name_or_path: str | Path | Lexicon) -> Lexicon:
        """A Lexicon as is, a preset by name, or a lexicon file by path (CLI helper). A preset name means the
        preset unless a file (not a folder) of that name exists."""
        if isinstance(name_or_path, Lexicon):
            return name_or_path
        s = str(name_or_path)
        if s in cls.presets() and not Path(s).is_file():
            return cls.preset(s)
        if Path(s).exists() or any(c in s for c in "/\\."):
            return cls.load(s)
        # a preset name returned above, so this is neither a preset nor a file
        raise InputError(f"unknown lexicon preset {s!r} and no lexicon file of that name; presets: "
                         f"{', '.join(cls.presets())}")
