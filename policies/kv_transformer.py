"""ReLIC's sequence model: a causal transformer over one token per step, with a KV cache and Sink-KV.

One token per env step (:class:`TokenEmbed`): a linear embedding of the observation, plus learned
embeddings of the previous action, of an "an episode ended before this step" flag and of the step
index within the episode (ReLIC's per-episode position; attention itself runs over the whole
trial, across episode boundaries). Pre-norm blocks of multi-head self-attention
(``torch.nn.functional.scaled_dot_product_attention``) and a GELU MLP; a policy head (logits)
and a value head share the trunk.

**KV cache** (:class:`KVCache`): per layer a ``(B, heads, 1 + capacity, head_dim)`` key and value
tensor, so acting costs one token's work attending over the cached context instead of a
recomputation of the whole sequence. Slot 0 is reserved for the sink; context position ``i`` lives
in slot ``1 + i``. Memory: ``2 * layers * B * heads * (1 + capacity) * head_dim * bytes``
(:meth:`KVCache.nbytes`), e.g. 64 MiB for one env at 65,536 steps with 2 layers, hidden 64, fp32.

**Sink-KV** (ReLIC): each attention layer owns one learnable key and value per head, initialised
to zero and prepended to every query's keys, so a query can put attention mass on "nothing"
instead of spreading it over an uninformative history. The sink has no query and is not a
context token: no position holds it and compaction never moves it; at each cached forward its
parameters are copied into slot 0, so attention is one call over a contiguous slice of the cache
(no 64k-long concatenation per step) and the slot can never be stale.

Which keys a query may see is a boolean mask built by the caller (same trial and not in the
future): :func:`context_mask`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def context_mask(seg: torch.Tensor, q_start: int, q_end: int) -> torch.Tensor:
    """Keys each query may attend to: ``(B, q_end - q_start, q_end)`` bool from segment ids ``seg`` (B, >= q_end).

    Query ``q`` (absolute position) sees key ``k <= q`` of the same segment (trial); segments
    differ across trials, so attention never crosses a trial boundary.
    """
    keys = seg[:, :q_end]
    queries = seg[:, q_start:q_end]
    same = keys.unsqueeze(1) == queries.unsqueeze(2)
    causal = torch.ones(q_end - q_start, q_end, dtype=torch.bool, device=seg.device).tril(q_start)
    return same & causal


def extended(t: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """``t`` lengthened to ``size`` along ``dim``: its values first, then zeros."""
    shape = list(t.shape)
    shape[dim] = size
    out = t.new_zeros(shape)
    out.narrow(dim, 0, t.shape[dim]).copy_(t)
    return out


class KVCache:
    """Keys and values of a context, per layer: ``k[l]``, ``v[l]`` are (B, heads, 1 + capacity, head_dim).

    Slot 0 belongs to the sink (refilled from the parameters at every forward); context position
    ``i`` is slot ``1 + i``.
    """

    def __init__(
        self,
        layers: int,
        batch: int,
        heads: int,
        capacity: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (batch, heads, 1 + capacity, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.capacity = capacity

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    def grow(self, capacity: int) -> None:
        """Room for ``capacity`` positions, everything cached kept in place."""
        for cached in (self.k, self.v):
            cached[:] = [extended(t, 1 + capacity, dim=2) for t in cached]
        self.capacity = capacity

    def shift(self, n: int, length: int) -> None:
        """Drop context positions ``[0, n)`` of ``length`` and move the rest to the front (compaction)."""
        for t in (*self.k, *self.v):
            t[:, :, 1 : 1 + length - n] = t[:, :, 1 + n : 1 + length].clone()


class TokenEmbed(nn.Module):
    """One token per step from a raw token row: ``[obs (obs_dim), prev action, boundary flag, step in episode]``.

    The previous action ``num_actions`` means "none" (a trial's first step).
    """

    def __init__(self, obs_dim: int, num_actions: int, dim: int, max_episode_steps: int) -> None:
        super().__init__()
        self.obs = nn.Linear(obs_dim, dim)
        self.action = nn.Embedding(num_actions + 1, dim)
        self.boundary = nn.Embedding(2, dim)
        self.step = nn.Embedding(max_episode_steps, dim)
        self.max_step = max_episode_steps - 1

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., obs_dim + 3) -> (..., dim)."""
        obs, action, boundary, step = raw[..., :-3], raw[..., -3].long(), raw[..., -2].long(), raw[..., -1].long()
        return self.obs(obs) + self.action(action) + self.boundary(boundary) + self.step(step.clamp(max=self.max_step))


class SinkAttention(nn.Module):
    """Multi-head causal self-attention with optional Sink-KV, over new tokens plus a cached past."""

    def __init__(self, dim: int, heads: int, sink_kv: bool) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.sink_k = nn.Parameter(torch.zeros(heads, self.head_dim)) if sink_kv else None
        self.sink_v = nn.Parameter(torch.zeros(heads, self.head_dim)) if sink_kv else None

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        start: int,
        write: bool,
    ) -> torch.Tensor:
        """New tokens ``x`` (B, n, dim) at context positions ``[start, start + n)`` -> (B, n, dim).

        ``mask`` (B, n, start + n) says which context keys each query sees. ``cache``: this layer's
        (k, v) (B, H, 1 + C, D) holding positions ``[0, start)``; with ``write`` the new keys and
        values go into it and attention reads one contiguous slice (acting, refreshing); without,
        the cached past is read detached and concatenated with the new keys (training through a
        partial update, where the new keys carry gradients). ``cache=None``: no past (start 0).
        """
        b, n, dim = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        sink = self.sink_k is not None
        if cache is not None and write:
            ck, cv = cache
            ck[:, :, 1 + start : 1 + start + n] = k
            cv[:, :, 1 + start : 1 + start + n] = v
            if sink:
                ck[:, :, 0] = self.sink_k
                cv[:, :, 0] = self.sink_v
            lo = 0 if sink else 1
            keys, values = ck[:, :, lo : 1 + start + n], cv[:, :, lo : 1 + start + n]
            if keys.dtype != q.dtype:  # a reduced-precision cache: attend in its precision
                q = q.to(keys.dtype)
        else:
            parts_k, parts_v = [k], [v]
            if cache is not None and start > 0:
                parts_k.insert(0, cache[0][:, :, 1 : 1 + start].detach().to(k.dtype))
                parts_v.insert(0, cache[1][:, :, 1 : 1 + start].detach().to(v.dtype))
            if sink:
                parts_k.insert(0, self.sink_k.to(k.dtype).expand(b, -1, -1).unsqueeze(2))
                parts_v.insert(0, self.sink_v.to(v.dtype).expand(b, -1, -1).unsqueeze(2))
            keys, values = torch.cat(parts_k, dim=2), torch.cat(parts_v, dim=2)
        if sink:
            mask = torch.cat([mask.new_ones(b, n, 1), mask], dim=-1)
        if n == 1:
            out = decode_attention(q, keys, values, mask.unsqueeze(1))
        else:
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask.unsqueeze(1))
        return self.out(out.to(x.dtype).transpose(1, 2).reshape(b, n, dim))


def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention of one query per head (B, H, 1, D) over a long cache, as two matrix-vector products.

    The fused attention kernels parallelise over queries: with one query and a 64k-step cache a
    GPU runs a handful of blocks that each walk the whole cache (16 ms per step on an H200),
    where a product over all keys at once is spread over the whole chip."""
    scores = (q @ keys.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1, dtype=torch.float32).to(values.dtype) @ values  # a bf16 cache: normalise in fp32


class Block(nn.Module):
    """Pre-norm transformer block: attention and a GELU MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, sink_kv: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SinkAttention(dim, heads, sink_kv)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache, start: int, write: bool) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask, cache, start, write)
        return x + self.mlp(self.norm2(x))


class CausalTransformer(nn.Module):
    """Tokens -> policy logits and values, over a context held in a :class:`KVCache`."""

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        dim: int,
        layers: int,
        heads: int,
        mlp_ratio: int,
        sink_kv: bool,
        max_episode_steps: int,
    ) -> None:
        super().__init__()
        self.embed = TokenEmbed(obs_dim, num_actions, dim, max_episode_steps)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, sink_kv) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.policy = nn.Linear(dim, num_actions)
        self.value = nn.Linear(dim, 1)
        nn.init.orthogonal_(self.policy.weight, 0.01)
        nn.init.zeros_(self.policy.bias)
        self.heads, self.head_dim = heads, dim // heads

    def new_cache(self, batch: int, capacity: int, dtype: torch.dtype = torch.float32) -> KVCache:
        device = self.value.weight.device
        return KVCache(len(self.blocks), batch, self.heads, capacity, self.head_dim, device, dtype)

    def forward(
        self,
        raw: torch.Tensor,
        mask: torch.Tensor,
        cache: KVCache | None = None,
        start: int = 0,
        write: bool = True,
        rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw tokens (B, n, token_dim) at positions ``[start, start + n)`` -> logits (B, n, A), values (B, n).

        ``rows`` picks the cache's envs (a minibatch of envs; read-only, so ``write`` must be False).
        """
        x = self.embed(raw)
        for i, block in enumerate(self.blocks):
            layer_cache = None
            if cache is not None:
                k, v = cache.k[i], cache.v[i]
                layer_cache = (k, v) if rows is None else (k[rows], v[rows])
            x = block(x, mask, layer_cache, start, write and rows is None)
        x = self.norm(x)
        return self.policy(x), self.value(x).squeeze(-1)
