"""A small plain-torch decoder for sampling from the lab's Qwen2 / Llama models (nanoGPT style).

For models this tiny (about 1M-10M parameters) a Hugging Face forward pass for one decode step is dominated by
Python overhead (module calls, mask building, cache objects), not by arithmetic. `FastDecoder` runs the same
network written out in a few tensor operations per layer, reading the HF model's own weights (no copy is kept
beyond two fused matrices per layer, rebuilt on every construction, so it always sees the current policy):

    h   = x + W_o  Attn(RoPE(W_q n1(x) + b_q), RoPE(W_k n1(x) + b_k), W_v n1(x) + b_v)
    out = h + W_down (silu(W_gate n2(h)) * W_up n2(h))                      n(x) = w * x / sqrt(mean(x^2) + eps)

RoPE with the config's rope_theta (cos/sin of p * theta^(-2i/d), the HF formula), grouped-query attention
(query head h reads key/value head h // (heads / kv_heads)), final RMSNorm and the (tied or untied) lm_head.

The KV cache is preallocated [B, kv_heads, P + T, head_dim] per layer for left-padded prompts of width P and up to
T new tokens; every row writes its t-th new token to column P + t, and padding columns are masked out. Rows whose
response has ended are dropped lazily: the batch is compacted (one copy of the cache) only once a quarter of its
rows have finished, so the copy cost stays small while finished rows stop costing compute soon after.

`unsupported_reason(model)` says why a model cannot use this decoder (other architectures, sliding windows,
scaled RoPE variants, non-float32 weights...); `hicra.lab.sampling.sample` then falls back to the HF forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED_TYPES = ("qwen2", "llama")


def unsupported_reason(model) -> str | None:
    """None if `FastDecoder(model)` reproduces the model's forward pass, else a short reason why not."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED_TYPES:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {SUPPORTED_TYPES}"
    if getattr(config, "hidden_act", None) != "silu":
        return f"activation {config.hidden_act!r} is not silu"
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rope type {rope.get('rope_type')!r} is not the default"
    if getattr(config, "use_sliding_window", False) or any(
            t != "full_attention" for t in (getattr(config, "layer_types", None) or [])):
        return "sliding-window attention"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp != 1"
    try:
        body, layers = model.model, model.model.layers
        rotary = body.rotary_emb
        if float(getattr(rotary, "attention_scaling", 1.0)) != 1.0:
            return "scaled rotary embeddings"
        if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()):
            return "weights are not float32 on the CPU"
        for layer in layers:
            layer.self_attn.q_proj, layer.mlp.gate_proj, layer.input_layernorm.weight  # noqa: B018
    except AttributeError as err:
        return f"unexpected module layout ({err})"
    return None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """w * x / sqrt(mean(x^2) + eps) over the last dimension (HF's RMSNorm; one fused op, same float32 result)."""
    return F.rms_norm(x, weight.shape, weight, eps)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on the last dimension, split in halves: x * cos + (-x2, x1) * sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class FastDecoder:
    """Prefill + one-token decode steps over a preallocated KV cache, with the HF model's current weights.

    Usage: `logits = dec.prefill(ids, mask, max_new_tokens)` (last-position logits [B, V]), then per step
    `logits = dec.step(tok, pos)` for the rows still held; `dec.keep(idx)` drops rows (indices into the rows held).
    `dec.forward(ids, mask)` gives full-sequence logits [B, L, V] (what the tests compare with HF).
    """

    def __init__(self, model):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"FastDecoder does not support this model: {reason}")
        cfg = model.config
        body = model.model
        attn0 = body.layers[0].self_attn
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = attn0.head_dim
        self.eps = cfg.rms_norm_eps
        self.scale = self.head_dim ** -0.5
        self.embed = body.embed_tokens.weight
        self.norm = body.norm.weight
        self.lm_head = model.lm_head.weight
        self.lm_bias = model.lm_head.bias
        self.inv_freq = body.rotary_emb.inv_freq.float()
        # fused under the caller's grad mode: with grad enabled, `forward` back-propagates into the HF weights
        self.layers = [self._layer_weights(layer) for layer in body.layers]

    @staticmethod
    def _layer_weights(layer) -> dict:
        """One layer's weights; q/k/v and gate/up fused into one matrix each (one matmul instead of three/two)."""
        a, m = layer.self_attn, layer.mlp

        def bias(*mods):
            if all(mod.bias is None for mod in mods):
                return None
            return torch.cat([mod.bias if mod.bias is not None else torch.zeros(mod.out_features) for mod in mods])

        return {"ln1": layer.input_layernorm.weight, "ln2": layer.post_attention_layernorm.weight,
                "qkv": torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
                "qkv_b": bias(a.q_proj, a.k_proj, a.v_proj), "o": a.o_proj.weight, "o_b": a.o_proj.bias,
                "gate_up": torch.cat([m.gate_proj.weight, m.up_proj.weight]),
                "gate_up_b": bias(m.gate_proj, m.up_proj), "down": m.down_proj.weight, "down_b": m.down_proj.bias}

    def rope(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [..., head_dim] for integer positions `pos` (same formula and float32 as HF's rotary)."""
        freqs = pos.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def _qkv(self, w: dict, x: torch.Tensor, cos, sin):
        """x [..., C] -> rotated q [..., H, D], rotated k [..., KV, D], v [..., KV, D]."""
        h = rms_norm(x, w["ln1"], self.eps)
        qkv = F.linear(h, w["qkv"], w["qkv_b"])
        nqk = (self.n_heads + self.n_kv) * self.head_dim
        # q and k heads side by side: one rotation for both
        qk = rotate(qkv[..., :nqk].unflatten(-1, (self.n_heads + self.n_kv, self.head_dim)), cos, sin)
        v = qkv[..., nqk:].unflatten(-1, (self.n_kv, self.head_dim))
        return qk[..., : self.n_heads, :], qk[..., self.n_heads:, :], v

    def _mlp(self, w: dict, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(rms_norm(x, w["ln2"], self.eps), w["gate_up"], w["gate_up_b"]).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w["down"], w["down_b"])

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(rms_norm(x, self.norm, self.eps), self.lm_head, self.lm_bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, cache_width: int | None = None) -> torch.Tensor:
        """Logits [B, L, V] for left-padded `ids` [B, L] with bool `mask` (positions count real tokens only).
        With `cache_width`, also fills a fresh KV cache of that many columns (the prompt takes the first L)."""
        bsz, length = ids.shape
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = self.rope(pos)  # [B, L, D]
        cos, sin = cos[:, :, None], sin[:, :, None]  # broadcast over heads
        # causal attention to real keys; a padding query sees itself only, so no row of the softmax is empty
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = (causal & mask[:, None, :]) | torch.eye(length, dtype=torch.bool)
        allowed = allowed[:, None]  # [B, 1, L, L]
        if cache_width is not None:
            self.k = [torch.zeros(bsz, self.n_kv, cache_width, self.head_dim) for _ in self.layers]
            self.v = [torch.zeros(bsz, self.n_kv, cache_width, self.head_dim) for _ in self.layers]
            self.key_ok = torch.ones(bsz, cache_width, dtype=torch.bool)  # False on padding
            self.key_ok[:, :length] = mask
            self.length = length
        x = F.embedding(ids, self.embed)
        for i, w in enumerate(self.layers):
            q, k, v = self._qkv(w, x, cos, sin)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, L, D]
            if cache_width is not None:
                self.k[i][:, :, :length] = k
                self.v[i][:, :, :length] = v
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.scale, enable_gqa=True)
            x = x + F.linear(y.transpose(1, 2).flatten(2), w["o"], w["o_b"])
            x = self._mlp(w, x)
        return self._logits(x)

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Run the prompts and set up the cache for `max_new_tokens` more tokens; last-position logits [B, V]."""
        return self.forward(ids, mask, cache_width=ids.shape[1] + max_new_tokens)[:, -1]

    @torch.no_grad()
    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Append one token per held row (`tok` [B], its position `pos` [B]); returns next-token logits [B, V]."""
        col = self.length
        self.length += 1
        cos, sin = self.rope(pos)  # [B, D]
        cos, sin = cos[:, None], sin[:, None]
        allowed = self.key_ok[:, None, None, : col + 1]  # [B, 1, 1, keys], broadcast over kv heads and groups
        x = F.embedding(tok, self.embed)  # [B, C]
        for i, w in enumerate(self.layers):
            q, k, v = self._qkv(w, x, cos, sin)  # [B, H, D], [B, KV, D], [B, KV, D]
            self.k[i][:, :, col] = k
            self.v[i][:, :, col] = v
            keys, values = self.k[i][:, :, : col + 1], self.v[i][:, :, : col + 1]  # [B, KV, keys, D]
            y = self._attend_one(q, keys, values, allowed)
            x = x + F.linear(y, w["o"], w["o_b"])
            x = self._mlp(w, x)
        return self._logits(x)

    def _attend_one(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, allowed: torch.Tensor):
        """Attention of one query per row, q [B, H, D], over cached keys/values [B, KV, keys, D] -> [B, H * D].

        Written out (scores, masked softmax, weighted sum) rather than SDPA: for a single query over a few dozen
        keys, SDPA's CPU kernel is slower than these few small ops (`benchmarks/decode_step.py`: about 1.2x).
        Query head h reads kv head h // (H / KV), so the H heads are viewed as [KV, H / KV]."""
        bsz = q.shape[0]
        q = q.view(bsz, self.n_kv, self.n_heads // self.n_kv, self.head_dim)
        scores = torch.matmul(q, keys.transpose(-1, -2)) * self.scale  # [B, KV, H / KV, keys]
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        return torch.matmul(weights, values).reshape(bsz, self.n_heads * self.head_dim)

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the held rows `idx` (a copy of the cache; the caller decides how often)."""
        self.k = [k[idx] for k in self.k]
        self.v = [v[idx] for v in self.v]
        self.key_ok = self.key_ok[idx]
