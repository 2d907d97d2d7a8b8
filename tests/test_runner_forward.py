"""The native loader's logits against an independent plain-torch forward of each architecture.

The reference below is written from the architecture description (facts file, sections 2-3),
reads the checkpoint's own tensors (InternLM2's packed, grouped ``wqkv`` unpacked here, in the
attention), and shares no code with model_zoo.runner: its own RMSNorm, rotary embedding with
InternLM's dynamic NTK formula, GQA attention with a causal mask and a KV cache, and MLP.
Everything runs in fp32 on tiny checkpoints whose ``max_position_embeddings`` is 64, so a
100-token sequence exercises the scaled rope.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model_zoo.runner.api import load
from model_zoo.runner.generate import forward_step

TOL = 1e-4


# ------------------------------------------------------------------ independent reference


def read_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():  # noqa: SIM118
                out[k] = fh.get_tensor(k).float()
    return out


def rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class Reference:
    """Plain-torch forward for InternLM2 (packed wqkv), InternLM3 and InternLM v1."""

    def __init__(self, path: Path) -> None:
        self.cfg = json.loads((path / "config.json").read_text())
        self.sd = read_state(path)
        c = self.cfg
        self.arch = c["architectures"][0]
        self.h = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.d = c.get("head_dim") or self.h // self.nh
        self.eps = c["rms_norm_eps"]
        self.m = c["max_position_embeddings"]
        if "rotary" in c:  # v1
            self.base = float(c["rotary"]["base"])
            self.kind = c["rotary"]["type"]
            self.factor = float(c["rotary"].get("scaling_factor", 1.0))
        else:
            self.base = float(c["rope_theta"])
            rs = c.get("rope_scaling") or {}
            self.kind = rs.get("type") or rs.get("rope_type") or "none"
            self.factor = float(rs.get("factor", 1.0))

    def inv_freq(self, seq_len: int) -> torch.Tensor:
        base, d = self.base, self.d
        if self.kind == "dynamic" and seq_len > self.m:
            base = base * ((self.factor * seq_len / self.m) - (self.factor - 1)) ** (d / (d - 2))
        inv = 1.0 / base ** (torch.arange(0, d, 2).float() / d)
        return inv / self.factor if self.kind == "linear" else inv

    def rotate(self, x: torch.Tensor, positions: torch.Tensor, seq_len: int) -> torch.Tensor:
        ang = positions.float()[:, None] * self.inv_freq(seq_len)[None, :]  # [L, d/2]
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
        half = self.d // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rot * sin

    def qkv(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        sd = self.sd
        if self.arch.startswith("InternLM2"):
            g = self.nh // self.nkv
            w = sd[f"model.layers.{i}.attention.wqkv.weight"]
            out = (x @ w.T).view(b, n, self.nkv, g + 2, self.d)
            q = out[:, :, :, :g, :].reshape(b, n, self.nh, self.d)
            k, v = out[:, :, :, g, :], out[:, :, :, g + 1, :]
            return q, k, v
        p = f"model.layers.{i}.self_attn."

        def lin(name: str) -> torch.Tensor:
            y = x @ sd[p + name + ".weight"].T
            return y + sd[p + name + ".bias"] if p + name + ".bias" in sd else y

        return (
            lin("q_proj").view(b, n, self.nh, self.d),
            lin("k_proj").view(b, n, self.nkv, self.d),
            lin("v_proj").view(b, n, self.nkv, self.d),
        )

    def names(self, i: int) -> dict[str, str]:
        if self.arch.startswith("InternLM2"):
            p = f"model.layers.{i}."
            return {
                "n1": p + "attention_norm.weight",
                "n2": p + "ffn_norm.weight",
                "o": p + "attention.wo",
                "gate": p + "feed_forward.w1",
                "up": p + "feed_forward.w3",
                "down": p + "feed_forward.w2",
            }
        p = f"model.layers.{i}."
        return {
            "n1": p + "input_layernorm.weight",
            "n2": p + "post_attention_layernorm.weight",
            "o": p + "self_attn.o_proj",
            "gate": p + "mlp.gate_proj",
            "up": p + "mlp.up_proj",
            "down": p + "mlp.down_proj",
        }

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.sd[name + ".weight"].T
        return y + self.sd[name + ".bias"] if name + ".bias" in self.sd else y

    def forward(
        self, ids: torch.Tensor, cache: list | None = None, *, rotate_cached: bool = False
    ) -> tuple[torch.Tensor, list, torch.Tensor]:
        """Logits for ``ids`` after ``cache``; returns (logits, new cache, final hidden).

        The cache keeps keys rotated with the base of the step that computed them (InternLM2/3);
        ``rotate_cached`` keeps raw keys and re-rotates all of them each step (InternLM v1).
        """
        sd = self.sd
        emb = sd.get("model.tok_embeddings.weight", sd.get("model.embed_tokens.weight"))
        x = emb[ids]
        b, n = ids.shape
        past = cache[0][0].shape[1] if cache else 0
        total = past + n
        pos = torch.arange(past, total)
        new_cache = []
        g = self.nh // self.nkv
        for i in range(self.cfg["num_hidden_layers"]):
            nm = self.names(i)
            hN = rms(x, sd[nm["n1"]], self.eps)
            q, k, v = self.qkv(i, hN)
            q = self.rotate(q.transpose(1, 2), pos, total)
            if rotate_cached:
                k_raw = torch.cat([cache[i][0], k], 1) if cache else k
                v_all = torch.cat([cache[i][1], v], 1) if cache else v
                new_cache.append((k_raw, v_all))
                k_all = self.rotate(k_raw.transpose(1, 2), torch.arange(total), total).transpose(
                    1, 2
                )
            else:
                k_rot = self.rotate(k.transpose(1, 2), pos, total).transpose(1, 2)
                k_all = torch.cat([cache[i][0], k_rot], 1) if cache else k_rot
                v_all = torch.cat([cache[i][1], v], 1) if cache else v
                new_cache.append((k_all, v_all))
            kk = k_all.transpose(1, 2).repeat_interleave(g, dim=1)  # [b, nh, total, d]
            vv = v_all.transpose(1, 2).repeat_interleave(g, dim=1)
            scores = q @ kk.transpose(-1, -2) / math.sqrt(self.d)
            causal = torch.arange(total)[None, :] > pos[:, None]
            scores = scores.masked_fill(causal, float("-inf"))
            attn = scores.softmax(-1) @ vv  # [b, nh, n, d]
            x = x + self.linear(nm["o"], attn.transpose(1, 2).reshape(b, n, self.nh * self.d))
            hN = rms(x, sd[nm["n2"]], self.eps)
            gate, up = self.linear(nm["gate"], hN), self.linear(nm["up"], hN)
            x = x + self.linear(nm["down"], torch.nn.functional.silu(gate) * up)
        hidden = rms(x, sd["model.norm.weight"], self.eps)
        head = sd.get("output.weight", sd.get("lm_head.weight"))
        logits = hidden @ head.T if head is not None else hidden @ sd["v_head.weight"].T
        return logits, new_cache, hidden


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint):
    def build(arch: str):
        path = tiny_checkpoint(arch, dtype="float32", shards=3)
        return path, load(path, device="cpu"), Reference(path)

    return build


def ids_of(n: int, seed: int, vocab: int = 1000) -> torch.Tensor:
    return torch.randint(3, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ InternLM2


@pytest.mark.parametrize("length", [20, 64, 100])
def test_internlm2_prefill_matches_reference(fp32, length: int) -> None:
    _, runner, ref = fp32("internlm2")
    ids = ids_of(length, seed=length)
    with torch.inference_mode():
        ours = runner.model(ids).logits
    want, _, _ = ref.forward(ids)
    assert ours.dtype == torch.float32
    err = (ours - want).abs().max().item()
    assert err < TOL, f"max |diff| {err} at length {length}"


def test_internlm2_dynamic_ntk_really_changes_logits_past_max_positions(fp32) -> None:
    # Guard against a reference that would agree for the wrong reason: without the NTK base
    # change, logits past max_position_embeddings differ clearly.
    _, _, ref = fp32("internlm2")
    ids = ids_of(100, seed=5)
    want, _, _ = ref.forward(ids)
    ref.kind = "none"
    plain, _, _ = ref.forward(ids)
    ref.kind = "dynamic"
    assert (want - plain).abs().max().item() > 1e-3


def test_internlm2_rope_is_stateless_after_a_longer_call(fp32) -> None:
    # transformers' own dynamic rope keeps the longest length seen; InternLM's formula uses
    # the current one. A long call followed by a shorter (still scaled) one must match.
    _, runner, ref = fp32("internlm2")
    with torch.inference_mode():
        runner.model(ids_of(120, seed=1))
        ids = ids_of(80, seed=2)
        ours = runner.model(ids).logits
    want, _, _ = ref.forward(ids)
    assert (ours - want).abs().max().item() < TOL


def test_internlm2_incremental_decoding_with_kv_cache(fp32) -> None:
    _, runner, ref = fp32("internlm2")
    prompt = ids_of(58, seed=7)
    steps = ids_of(14, seed=8)[0]  # crosses max_position_embeddings (64) mid-way
    mask = torch.ones_like(prompt)
    with torch.inference_mode():
        logits, cache = forward_step(runner.model, prompt, mask, torch.arange(58)[None], None)
        want, ref_cache, _ = ref.forward(prompt)
        assert (logits - want[:, -1]).abs().max().item() < TOL
        for j, tok in enumerate(steps.tolist()):
            n = 58 + j
            mask = torch.ones((1, n + 1), dtype=torch.long)
            logits, cache = forward_step(
                runner.model, torch.tensor([[tok]]), mask, torch.tensor([[n]]), cache
            )
            want, ref_cache, _ = ref.forward(torch.tensor([[tok]]), ref_cache)
            err = (logits - want[:, -1]).abs().max().item()
            assert err < TOL, f"step {j} (position {n}): max |diff| {err}"


def test_internlm2_batched_left_padding_matches_single(fp32) -> None:
    _, runner, ref = fp32("internlm2")
    a, b = ids_of(30, seed=11)[0].tolist(), ids_of(12, seed=12)[0].tolist()
    out = runner.generate_ids([a, b], do_sample=False, max_new_tokens=6, stop_token_ids=[])
    for prompt, completion in zip([a, b], out, strict=True):
        seq = list(prompt)
        for _ in range(6):
            logits, _, _ = ref.forward(torch.tensor([seq]))
            seq.append(int(logits[0, -1].argmax()))
        assert completion.ids == seq[len(prompt) :]


def test_internlm2_greedy_generation_matches_reference_decoding(fp32) -> None:
    _, runner, ref = fp32("internlm2")
    prompt = ids_of(60, seed=21)[0].tolist()
    got = runner.generate_ids([prompt], do_sample=False, max_new_tokens=10, stop_token_ids=[])[
        0
    ].ids
    seq, cache = list(prompt), None
    logits, cache, _ = ref.forward(torch.tensor([seq]))
    for _ in range(10):
        nxt = int(logits[0, -1].argmax())
        seq.append(nxt)
        logits, cache, _ = ref.forward(torch.tensor([[nxt]]), cache)
    assert got == seq[len(prompt) :]


# ------------------------------------------------------------------ InternLM3 and v1


@pytest.mark.parametrize("arch", ["internlm3", "internlm"])
@pytest.mark.parametrize("length", [30, 100])
def test_other_families_prefill_match_reference(fp32, arch: str, length: int) -> None:
    _, runner, ref = fp32(arch)
    ids = ids_of(length, seed=length + 1)
    with torch.inference_mode():
        ours = runner.model(ids).logits
    want, _, _ = ref.forward(ids)
    assert (ours - want).abs().max().item() < TOL


def test_internlm3_decoding_with_cache(fp32) -> None:
    _, runner, ref = fp32("internlm3")
    prompt = ids_of(60, seed=31)[0].tolist()
    got = runner.generate_ids([prompt], do_sample=False, max_new_tokens=8, stop_token_ids=[])[0].ids
    seq, cache = list(prompt), None
    logits, cache, _ = ref.forward(torch.tensor([seq]))
    for _ in range(8):
        nxt = int(logits[0, -1].argmax())
        seq.append(nxt)
        logits, cache, _ = ref.forward(torch.tensor([[nxt]]), cache)
    assert got == seq[len(prompt) :]


def test_internlm_v1_has_biases_and_decodes_past_max_positions_like_its_reference(fp32) -> None:
    _, runner, ref = fp32("internlm")
    assert runner.model.model.layers[0].self_attn.o_proj.bias is not None
    assert runner.model.model.layers[0].self_attn.q_proj.bias is not None
    # v1's reference re-rotates every cached key with the current NTK base
    prompt = ids_of(60, seed=41)[0].tolist()
    got = runner.generate_ids([prompt], do_sample=False, max_new_tokens=8, stop_token_ids=[])[0].ids
    seq, cache = list(prompt), None
    logits, cache, _ = ref.forward(torch.tensor([seq]), rotate_cached=True)
    for _ in range(8):
        nxt = int(logits[0, -1].argmax())
        seq.append(nxt)
        logits, cache, _ = ref.forward(torch.tensor([[nxt]]), cache, rotate_cached=True)
    assert got == seq[len(prompt) :]


def test_reward_model_scores_and_hidden_states_match_reference(fp32) -> None:
    _, runner, ref = fp32("internlm2-reward")
    ids = ids_of(40, seed=51)
    _, _, hidden = ref.forward(ids)
    want = hidden[0, -1] @ ref.sd["v_head.weight"][0]
    with torch.inference_mode():
        out = runner.model(ids)
    assert abs(out.logits[0, 0].item() - want.item()) < TOL
    assert (runner.hidden_states(ids) - hidden).abs().max().item() < TOL
    # right padding: the score is read at the last attended position
    padded = torch.cat([ids, torch.full((1, 5), 2)], 1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros((1, 5), dtype=torch.long)], 1)
    with torch.inference_mode():
        assert abs(runner.model(padded, mask).logits[0, 0].item() - want.item()) < TOL
    assert runner.v_head.weight.shape == (1, ref.h)
    assert runner.reward_token_id == ref.cfg["reward_token_id"]
