"""Planning tokens: strategic-gram lexicons, tokenizer-aligned tagging, mining and metrics."""

from hicra.planning.lexicon import CATEGORIES, Lexicon, Phrase
from hicra.planning.tagger import PlanningTagger, Span

__all__ = ["CATEGORIES", "Lexicon", "Phrase", "PlanningTagger", "Span"]
