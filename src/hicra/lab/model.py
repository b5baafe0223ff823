"""Tiny tokenizer and causal LM for the CPU lab, built locally (nothing is downloaded).

- `train_tokenizer(texts)`: a byte-level BPE (GPT-2 style byte alphabet, so any text round-trips) trained on the
  task corpus with the `tokenizers` library and wrapped in `PreTrainedTokenizerFast` with `<pad>` and `<eos>`.
- `build_model(tokenizer, size, arch)`: a Qwen2- or Llama-style causal LM from a config, about 1M / 3M / 10M
  parameters, with tied embeddings.

Both save with `.save_pretrained(dir)` and load with `AutoTokenizer` / `AutoModelForCausalLM`, so TRL and
`hicra eval` treat them like any Hugging Face model.

Prompt format (chat-free): the prompt is the question followed by a newline; the response follows directly and
ends with the eos token. `format_prompt(question)` is the one place that decides it.
"""

from __future__ import annotations

from collections.abc import Iterable

# how a teacher-forced batch reaches the model (`hicra.lab.sampling.sequence_logprobs`): "split" = left-padded prompts,
# right-padded responses, an attention mask; "joined" = prompt and response contiguous, right-padded, no mask
LAYOUTS = ("split", "joined")


def check_layout(layout: str, name: str = "layout") -> None:
    """ValueError naming `name` unless `layout` is one of `LAYOUTS` (the configs check theirs when built, so a bad
    one fails before a warm start or a run starts)."""
    if layout not in LAYOUTS:
        raise ValueError(f"{name} must be one of {LAYOUTS}, got {layout!r}")

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"

# size -> (hidden, intermediate, layers, heads, kv_heads); head_dim = hidden / heads.
# Parameter counts below are for a 512-token vocabulary with tied embeddings.
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "1m": (128, 384, 4, 4, 2),  # ~0.9M
    "3m": (256, 768, 4, 4, 2),  # ~3.3M
    "10m": (384, 1024, 6, 6, 2),  # ~9.6M
}


_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def format_prompt(question: str) -> str:
    """The lab's prompt format: the question, then a newline; the model writes the response after it."""
    return question.rstrip("\n") + "\n"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, min_frequency: int = 2):
    """Train a byte-level BPE on `texts` and wrap it as a `PreTrainedTokenizerFast` with pad and eos tokens.

    The byte-level alphabet (256 symbols) is always included, so text outside the corpus still encodes;
    merges come from the corpus only. Pad and eos get ids 0 and 1.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's normaliser and pre-tokeniser (digits split one by one, then bytes): transformers rebuilds a
    # directory holding a qwen2 config with exactly these, so the saved tokenizer loads back identically.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,  # byte-level BPE never needs unk; naming an existing token keeps the vocab fixed
        padding_side="left",  # left padding: prompts of a batch end at the same position for sampling
        clean_up_tokenization_spaces=False,
    )


def model_config(tokenizer, size: str = "3m", arch: str = "qwen2", max_positions: int = 512):
    """The transformers config for a lab model of `size` ("1m", "3m", "10m") and `arch` ("qwen2", "llama")."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    hidden, inter, layers, heads, kv_heads = SIZES[size]
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "gpt2":  # learned absolute positions (RoPE is relative only); sampled through the HF forward
        return GPT2Config(vocab_size=len(tokenizer), n_embd=hidden, n_inner=inter, n_layer=layers, n_head=heads,
                          n_positions=max_positions, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id, use_cache=True,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    raise ValueError(f"arch must be 'qwen2', 'llama' or 'gpt2', got {arch!r}")


def build_model(tokenizer, size: str = "3m", arch: str = "qwen2", seed: int = 0, max_positions: int = 512):
    """A freshly initialised tiny causal LM (float32, SDPA attention), its init seeded by `seed`."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(tokenizer, size=size, arch=arch, max_positions=max_positions)
    config._attn_implementation = "sdpa"
    # the init draws from torch's global RNG: fork it so building a model does not disturb the caller's stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def count_parameters(model) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
