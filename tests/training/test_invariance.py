"""Invariance: packed == separate forwards, no cache contamination, accumulation 8x1 == 1x8."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import (
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    DynamicCache,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    TrainingArguments,
)

from dsft.training.collators import PackedCollator, PaddingCollator, pack_row
from dsft.training.trainer import DsftTrainer, forward_hidden_states

VOCAB = 512


def _tiny(arch: str, attn: str = "sdpa") -> torch.nn.Module:
    """Tiny, seeded models of the three architectures (real classes, small vocab for speed)."""
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256, tie_word_embeddings=False)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=4, **common))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=2, **common))
    else:
        config = DeepseekV3Config(
            **common, num_key_value_heads=4, moe_intermediate_size=16, first_k_dense_replace=1,
            n_shared_experts=1, n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2,
            q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
        )
        model = DeepseekV3ForCausalLM(config)
        # Random router biases so the routing is not a trivial tie.
        for module in model.modules():
            if hasattr(module, "e_score_correction_bias"):
                module.e_score_correction_bias.normal_(0, 0.1)
    model.config._attn_implementation = attn
    return model.eval()


def _examples(lengths: list[int], seed: int = 0) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, VOCAB, (n,), generator=generator).tolist()
        prompt = n // 3  # the first third is an unsupervised prompt
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def _separate_logits(model: torch.nn.Module, examples: list[dict[str, list[int]]]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(torch.tensor([e["input_ids"]]), use_cache=False).logits[0] for e in examples]


ARCHS = ["llama", "qwen2", "deepseek_v3"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_packed_forward_equals_separate_forwards(arch: str, attn: str) -> None:
    model = _tiny(arch, attn)
    examples = _examples([9, 14, 5, 20, 7])
    rows = [pack_row(examples[:3]), pack_row(examples[3:])]  # two rows, the first padded at the tail
    batch = PackedCollator(pad_id=0)(rows)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    separate = _separate_logits(model, examples)
    offsets = [(0, 0), (0, 9), (0, 23), (1, 0), (1, 20)]
    for (row, start), expected in zip(offsets, separate):
        got = packed[row, start : start + expected.shape[0]]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_kv_cache_breaks_isolation_but_the_trainer_path_never_creates_one(arch: str) -> None:
    model = _tiny(arch)
    model.config.use_cache = True  # as released checkpoints ship
    examples = _examples([9, 14, 5])
    batch = PackedCollator(pad_id=0)([pack_row(examples)])
    separate = _separate_logits(model, examples)
    second = slice(9, 23)
    with torch.no_grad():
        # With a cache object transformers skips the packed-sequence mask: example 2 sees example 1.
        contaminated = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                             past_key_values=DynamicCache(config=model.config)).logits
        assert (contaminated[0, second] - separate[1]).abs().max() > 1e-3
        hidden, _ = forward_hidden_states(model, {"input_ids": batch["input_ids"],
                                                  "position_ids": batch["position_ids"]})
    lm_head = model.get_output_embeddings()
    torch.testing.assert_close(lm_head(hidden[0, second]), separate[1], atol=1e-5, rtol=1e-5)


def _train(model: torch.nn.Module, examples: list, batch: int, accum: int, tmp_path, trainer_cls=DsftTrainer):
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
        max_steps=3, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
        report_to=[], save_strategy="no", logging_steps=1, seed=7, data_seed=7, use_cpu=True,
        dataloader_drop_last=True, disable_tqdm=True,
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=examples,
                          data_collator=PackedCollator(pad_id=0), loss_chunk_size=7)
    trainer.train()
    return model


class _MeanOfMeansTrainer(DsftTrainer):
    """The classic bug, for contrast: each micro-batch normalised by its own token count."""

    loss_is_scaled_for_ga = False

    def _get_num_items_in_batch(self, batch_samples, device):  # noqa: ANN001, ANN202
        return None


def test_batch8_accum1_equals_batch1_accum8_and_mean_of_means_would_not(tmp_path) -> None:
    base = _tiny("deepseek_v3").train()
    # Very different supervised counts per example (1 .. 40), so a mean of per-example means differs.
    examples = _examples([6, 45, 12, 30, 8, 50, 20, 10] * 3, seed=1)
    for i, e in enumerate(examples):
        keep = 1 + (i * 7) % 40
        e["labels"] = [-100] * (len(e["labels"]) - keep) + e["input_ids"][-keep:]
    big = _train(copy.deepcopy(base), examples, batch=8, accum=1, tmp_path=tmp_path / "a")
    small = _train(copy.deepcopy(base), examples, batch=1, accum=8, tmp_path=tmp_path / "b")
    naive = _train(copy.deepcopy(base), examples, batch=1, accum=8, tmp_path=tmp_path / "c",
                   trainer_cls=_MeanOfMeansTrainer)
    moved, worst_gap, naive_gap = 0.0, 0.0, 0.0
    for (name, p0), p1, p2, p3 in zip(base.named_parameters(), big.parameters(), small.parameters(),
                                      naive.parameters()):
        moved = max(moved, (p1 - p0).abs().max().item())
        worst_gap = max(worst_gap, (p1 - p2).abs().max().item())
        naive_gap = max(naive_gap, (p1 - p3).abs().max().item())
    assert moved > 1e-3, "training did not change the weights"
    assert worst_gap < 1e-5, f"8x1 and 1x8 differ by {worst_gap}"
    assert naive_gap > 100 * max(worst_gap, 1e-7), "the test cannot tell mean-of-means from the global mean"


@pytest.mark.parametrize("arch", ARCHS)
def test_segment_attention_on_flattened_rows_equals_separate_forwards_and_their_gradients(arch: str) -> None:
    """dsft_segments (attention within each packed example, per-example causal sdpa on CPU) gives the
    logits and parameter gradients of separate forwards, MLA's narrower value heads included."""
    from dsft.training.segment_attention import SEGMENT_ATTENTION

    model = _tiny(arch, SEGMENT_ATTENTION)
    examples = _examples([9, 14, 5, 20, 7])
    batch = PackedCollator(pad_id=0, flatten=True)([pack_row(examples[:3]), pack_row(examples[3:])])
    assert batch["input_ids"].shape[0] == 1  # one flattened row with the examples' offsets
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k",
                                    "max_length_q", "max_length_k")}
    packed = model(**inputs, use_cache=False).logits[0]
    packed.float().pow(2).mean().backward()
    got_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    reference = _tiny(arch, "sdpa")
    separate = [reference(torch.tensor([e["input_ids"]]), use_cache=False).logits[0] for e in examples]
    torch.cat(separate).float().pow(2).mean().backward()
    offset = 0
    for expected in separate:
        torch.testing.assert_close(packed[offset: offset + expected.shape[0]], expected, atol=1e-5, rtol=1e-5)
        offset += expected.shape[0]
    for name, parameter in reference.named_parameters():
        if parameter.grad is not None:
            torch.testing.assert_close(got_grads[name], parameter.grad, atol=1e-5, rtol=1e-4)


def _recording_attention(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor | None]:
    """The ``attention_mask`` every layer's dsft_segments call receives, in order."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from dsft.training.segment_attention import SEGMENT_ATTENTION, segment_attention_forward

    received: list[torch.Tensor | None] = []

    def recording(module, query, key, value, attention_mask, **kwargs):  # noqa: ANN001, ANN202 - transformers' signature
        received.append(attention_mask)
        return segment_attention_forward(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, SEGMENT_ATTENTION, recording)
    return received


@pytest.mark.parametrize("arch", ARCHS)
def test_segment_attention_gets_no_mask_for_a_packed_row(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers builds no block-causal mask for dsft_segments' packed row (the examples' offsets come from
    the collator, or else from the restarting position ids); a padded batch still gets sdpa's mask."""
    from dsft.training.segment_attention import SEGMENT_ATTENTION

    received = _recording_attention(monkeypatch)
    model, reference = _tiny(arch, SEGMENT_ATTENTION), _tiny(arch, "sdpa")
    examples = _examples([9, 14, 5, 20, 7])
    separate = _separate_logits(reference, examples)
    batch = PackedCollator(pad_id=0, flatten=True)([pack_row(examples)])
    with_offsets = {k: batch[k] for k in ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k",
                                          "max_length_q", "max_length_k")}
    for inputs in (with_offsets, {k: batch[k] for k in ("input_ids", "position_ids")}):
        received.clear()
        with torch.no_grad():
            packed = model(**inputs, use_cache=False).logits[0]
        assert received and all(mask is None for mask in received)
        torch.testing.assert_close(packed, torch.cat(separate), atol=1e-5, rtol=1e-5)
    # Two rows, one padded: the fallback is transformers' masked sdpa.
    padded = PaddingCollator(pad_id=0)(examples[:2])
    received.clear()
    with torch.no_grad():
        logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], use_cache=False).logits
    assert received and all(mask is not None and mask.dim() == 4 for mask in received)
    torch.testing.assert_close(logits[0, :9], separate[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], separate[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [6, 30])
def test_segment_attention_keeps_a_sliding_window(window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sliding-window layer on a packed row attends only within its window: logits and gradients equal
    separate forwards. With a window shorter than the longest example (20 tokens) that takes sdpa with the
    window's mask (the segment path ignored it: logits 0.15 off); with a window no example exceeds, the
    window excludes nothing and the segment path runs."""
    from dsft.training import segment_attention

    def sliding_qwen2(attn: str) -> torch.nn.Module:
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
            use_sliding_window=True, sliding_window=window, max_window_layers=0))
        model.config._attn_implementation = attn
        return model.eval()

    fallbacks: list[int] = []
    stock_sdpa = segment_attention.sdpa_attention_forward

    def counting_sdpa(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - transformers' signature
        fallbacks.append(1)
        return stock_sdpa(*args, **kwargs)

    monkeypatch.setattr(segment_attention, "sdpa_attention_forward", counting_sdpa)
    model, reference = sliding_qwen2(segment_attention.SEGMENT_ATTENTION), sliding_qwen2("sdpa")
    assert model.config.layer_types == ["sliding_attention"] * 2
    examples = _examples([9, 14, 5, 20, 7])
    batch = PackedCollator(pad_id=0, flatten=True)([pack_row(examples)])
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k",
                                    "max_length_q", "max_length_k")}
    packed = model(**inputs, use_cache=False).logits[0]
    packed.pow(2).mean().backward()
    assert len(fallbacks) == (2 if window < 20 else 0)
    separate = [reference(torch.tensor([e["input_ids"]]), use_cache=False).logits[0] for e in examples]
    torch.cat(separate).pow(2).mean().backward()
    torch.testing.assert_close(packed, torch.cat(separate), atol=1e-5, rtol=1e-5)
    got = dict(model.named_parameters())
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(got[name].grad, parameter.grad, atol=1e-5, rtol=1e-4)
