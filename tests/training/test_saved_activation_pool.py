"""The saved-activation pool: backward reads exactly what it would have, each storage is copied once, slabs
are reused across forwards, and a stale saved tensor is refused."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from dsft.config.schema import LoraConfig
from dsft.models.lora import apply_lora
from dsft.training.collators import PackedCollator, pack_row
from dsft.training.lean_activations import use_lean_activations
from dsft.training.loss import supervised_cross_entropy
from dsft.training.saved_activation_pool import SavedActivationPool
from dsft.training.segment_attention import SEGMENT_ATTENTION
from dsft.training.trainer import forward_hidden_states


def _model(lean: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))
    model.config._attn_implementation = SEGMENT_ATTENTION
    model = apply_lora(model, LoraConfig())
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.1)
    if lean:
        use_lean_activations(model)
    return model.train()


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for lengths in ((9, 15), (21,)):
        examples = []
        for n in lengths:
            ids = torch.randint(3, 128, (n,), generator=generator).tolist()
            examples.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:]})
        rows.append(pack_row(examples))
    return PackedCollator(pad_id=0, flatten=True)(rows)


def _grads(model: torch.nn.Module, pool: SavedActivationPool | None) -> dict[str, torch.Tensor]:
    batch = _batch()
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k")}
    model.zero_grad(set_to_none=True)
    if pool is None:
        hidden, _ = forward_hidden_states(model, inputs)
    else:
        with pool.saving(model):
            hidden, _ = forward_hidden_states(model, inputs)
    head = model.get_output_embeddings().weight
    supervised_cross_entropy(hidden, head, batch["labels"], None, chunk_size=8).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lean", [False, True])
def test_gradients_through_the_pool_are_bitwise_the_same_and_slabs_are_reused(lean: bool) -> None:
    model = _model(lean)
    expected = _grads(model, None)
    pool = SavedActivationPool(min_bytes=0, slab_bytes=1 << 14)  # every saved tensor, several slabs
    for _ in range(2):
        got = _grads(model, pool)
        assert got.keys() == expected.keys()
        for name in expected:
            assert torch.equal(got[name], expected[name]), name
        if _ == 0:
            slabs = len(pool.slabs)
    assert slabs > 1 and len(pool.slabs) == slabs  # the second forward reused the first one's slabs


def test_a_storage_saved_by_several_nodes_is_copied_once() -> None:
    x = torch.randn(64, 64, requires_grad=True)
    weights = [torch.randn(64, 64, requires_grad=True) for _ in range(3)]
    shared = x * 2  # saved by all three matmuls below
    pool = SavedActivationPool(min_bytes=0)
    with pool.saving(torch.nn.Linear(1, 1)):
        total = sum((shared @ w).sum() for w in weights)
    assert pool._offset == shared.numel() * 4 + 3 * 64 * 64 * 4  # one copy of `shared` + the three weights
    total.backward()
    torch.testing.assert_close(x.grad, 2 * sum(w.sum(dim=1) for w in weights).expand(64, 64))


def test_backward_after_a_later_forward_is_refused() -> None:
    pool = SavedActivationPool(min_bytes=0)
    module = torch.nn.Linear(4, 4)
    x = torch.randn(3, 4, requires_grad=True)
    with pool.saving(module):
        first = (x.exp() * 3).sum()
    with pool.saving(module):
        (x.exp() * 3).sum()
    with pytest.raises(RuntimeError, match="later forward"):
        first.backward()


def test_heap_release_runs_a_few_times_per_training_pass_and_never_without_gradients(monkeypatch) -> None:
    from dsft.training import heap_release

    calls: list[int] = []
    monkeypatch.setattr(heap_release, "release_free_heap", lambda: calls.append(1) or True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=6,
                                         num_attention_heads=2, num_key_value_heads=1)).train()
    release = heap_release.HeapRelease(model.model.layers, passes=3)  # after layers 2, 4 and 6
    ids = torch.randint(0, 64, (1, 12))
    with torch.no_grad():
        model(ids)
    assert calls == []
    model(ids, use_cache=False).logits.sum().backward()
    assert len(calls) == 6  # three in the forward, three in the backward
    release.remove()
    model(ids, use_cache=False).logits.sum().backward()
    assert len(calls) == 6


def test_train_compact_cpu_memory_switches_the_pool_and_the_heap_release(tmp_path) -> None:
    from transformers import TrainingArguments

    from dsft.config import load_config
    from dsft.training.trainer import DsftTrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    on = DsftTrainer(model=_model(lean=True), args=args)  # the default, as train.compact_cpu_memory's
    assert on.activation_pool is not None and on.release_heap
    off = DsftTrainer(model=_model(lean=True), args=args, compact_cpu_memory=False)
    assert off.activation_pool is None and not off.release_heap
    assert load_config(None, []).train.compact_cpu_memory is True
    assert load_config(None, ["train.compact_cpu_memory=false"]).train.compact_cpu_memory is False


@pytest.mark.parametrize("compact", [True, False])
def test_heap_release_hooks_exist_only_while_a_trainer_trains(tmp_path, monkeypatch, compact: bool) -> None:
    """Two trainers on one model (built before either trains) each train with one set of release hooks, and
    none stays on the model after; with compact_cpu_memory off there are none at all."""
    from transformers import TrainerCallback, TrainingArguments

    from dsft.training import heap_release
    from dsft.training.trainer import DsftTrainer

    calls: list[int] = []
    monkeypatch.setattr(heap_release, "release_free_heap", lambda: calls.append(1) or True)
    model = _model(lean=True)
    layers = model.get_base_model().model.layers
    assert len(layers) < heap_release.RELEASES_PER_PASS  # so one set of hooks is one per layer

    def hooks_on_the_model() -> int:
        return sum(hook is heap_release.HeapRelease._after_forward
                   for layer in layers for hook in layer._forward_hooks.values())

    seen: list[tuple[int, int]] = []  # (hooks, releases so far) at each step's start and end

    class Watch(TrainerCallback):
        def on_step_begin(self, *args, **kwargs) -> None:
            seen.append((hooks_on_the_model(), len(calls)))

        def on_step_end(self, *args, **kwargs) -> None:
            seen.append((hooks_on_the_model(), len(calls)))

    ids = list(range(3, 23))
    rows = [pack_row([{"input_ids": ids, "labels": [-100] * 3 + ids[3:]}])]  # one row, one step

    def trainer(name: str) -> DsftTrainer:
        args = TrainingArguments(output_dir=str(tmp_path / name), use_cpu=True, report_to=[], max_steps=1,
                                 per_device_train_batch_size=1, save_strategy="no", disable_tqdm=True)
        return DsftTrainer(model=model, args=args, train_dataset=rows, callbacks=[Watch()],
                           data_collator=PackedCollator(pad_id=0, flatten=True), compact_cpu_memory=compact)

    first, second = trainer("first"), trainer("second")
    assert hooks_on_the_model() == 0
    for each in (first, second):
        seen.clear()
        calls.clear()
        each.train()
        one_set = len(layers) if compact else 0
        # One release after each hooked layer's forward and one after its backward.
        assert seen == [(one_set, 0), (one_set, 2 * one_set)]
        assert hooks_on_the_model() == 0


def test_compact_cpu_memory_off_is_refused_for_objectives_whose_loss_trl_computes() -> None:
    from dsft.config import load_config
    from dsft.training.objective_checks import objective_problems

    problems = objective_problems(load_config(None, ["train.objective=dpo", "train.compact_cpu_memory=false"]))
    assert any(p.startswith("train.compact_cpu_memory: belongs to dsft's SFT loss") for p in problems)
