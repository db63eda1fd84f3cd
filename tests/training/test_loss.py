"""The chunked supervised loss against the plain full-logits cross-entropy, and through DsftTrainer."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM, TrainingArguments

from dsft.training import loss as loss_module
from dsft.training.collators import PackedCollator, pack_row
from dsft.training.loss import (
    reference_cross_entropy,
    supervised_cross_entropy,
    supervised_cross_entropy_via_module,
)
from dsft.training.trainer import DsftTrainer


def _inputs(seed: int = 0, vocab: int = 1000, with_bias: bool = True):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 40, 24, generator=generator, requires_grad=True)
    weight = (torch.randn(vocab, 24, generator=generator) * 0.3).requires_grad_()
    bias = torch.randn(vocab, generator=generator).requires_grad_() if with_bias else None
    labels = torch.randint(0, vocab, (3, 40), generator=generator)
    labels[0, :25] = -100  # a long prompt
    labels[1, ::3] = -100  # scattered
    labels[2, 30:] = -100  # padding tail
    return hidden, weight, bias, labels


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
@pytest.mark.parametrize("num_items", [None, 137])
def test_chunked_loss_and_gradients_equal_full_logits_reference(chunk_size: int, num_items: int | None) -> None:
    hidden, weight, bias, labels = _inputs()
    ours = supervised_cross_entropy(hidden, weight, labels, num_items, chunk_size, lm_head_bias=bias)
    ours_grads = torch.autograd.grad(ours, [hidden, weight, bias])
    reference = reference_cross_entropy(hidden, weight, labels, num_items, lm_head_bias=bias)
    reference_grads = torch.autograd.grad(reference, [hidden, weight, bias])
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    for got, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_frozen_lm_head_gets_no_gradient_and_hidden_still_does() -> None:
    hidden, weight, _, labels = _inputs(with_bias=False)
    weight.requires_grad_(False)
    ours = supervised_cross_entropy(hidden, weight, labels, None, 16)
    ours.backward()
    reference_hidden = hidden.detach().clone().requires_grad_()
    reference_cross_entropy(reference_hidden, weight, labels).backward()
    torch.testing.assert_close(hidden.grad, reference_hidden.grad, atol=1e-5, rtol=1e-5)


def test_no_supervised_token_gives_zero_loss_and_zero_gradient() -> None:
    hidden, weight, _, labels = _inputs(with_bias=False)
    labels[:] = -100
    value = supervised_cross_entropy(hidden, weight, labels, None, 16)
    value.backward()
    assert value.item() == 0.0 and hidden.grad.abs().sum().item() == 0.0


def test_logits_never_exceed_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    hidden, weight, _, labels = _inputs(with_bias=False)
    shapes: list[tuple[int, ...]] = []
    buffers: set[int] = set()
    real_project = loss_module._project

    def spying_project(h, w, b, out):  # noqa: ANN001, ANN202
        shapes.append(tuple(h.shape))
        buffers.add(out.untyped_storage().data_ptr())
        return real_project(h, w, b, out)

    monkeypatch.setattr(loss_module, "_project", spying_project)
    supervised_cross_entropy(hidden, weight, labels, None, chunk_size=8).backward()
    supervised = int(labels[:, 1:].ne(-100).sum())
    assert shapes and all(s[0] <= 8 for s in shapes)
    assert sum(s[0] for s in shapes) == supervised  # only supervised positions reach the lm_head
    assert len(buffers) == 1  # every chunk reuses the one logits buffer


@pytest.mark.parametrize(("vocab", "device", "rows"), [(129_280, "cpu", 64), (32_000, "cpu", 262),
                                                       (600, "cpu", 1024), (129_280, "cuda", 256)])
def test_auto_chunk_size(vocab: int, device: str, rows: int) -> None:
    assert loss_module.auto_chunk_size(vocab, device) == rows


def _qwen() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    return Qwen2ForCausalLM(config)


def _trainer(model: torch.nn.Module, tmp_path) -> DsftTrainer:
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    return DsftTrainer(model=model, args=args, data_collator=PackedCollator(pad_id=0), loss_chunk_size=5)


@pytest.mark.parametrize("lora", [False, True])
def test_trainer_loss_equals_the_models_own_loss(lora: bool, tmp_path) -> None:
    model = _qwen()
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 600, (2, 30), generator=generator)
    labels = ids.clone()
    labels[:, :10] = -100
    expected = model(input_ids=ids, labels=labels, use_cache=False).loss  # HF: mean over shifted labels
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        expected = model(input_ids=ids, labels=labels, use_cache=False).loss
    trainer = _trainer(model, tmp_path)
    rows = [pack_row([{"input_ids": r.tolist(), "labels": l.tolist()}]) for r, l in zip(ids, labels)]
    batch = PackedCollator(pad_id=0)(rows)
    got = trainer.compute_loss(model, batch, num_items_in_batch=None)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    got.backward()
    lm_head = model.get_output_embeddings()
    assert (lm_head.weight.grad is None) == lora
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)


def test_trainer_evaluate_reports_a_loss(tmp_path) -> None:
    model = _qwen()
    generator = torch.Generator().manual_seed(4)
    examples = [{"input_ids": (ids := torch.randint(0, 600, (n,), generator=generator).tolist()), "labels": ids}
                for n in (12, 20, 7)]
    trainer = _trainer(model, tmp_path)
    metrics = trainer.evaluate(eval_dataset=examples)
    assert metrics["eval_loss"] > 0


def test_offloaded_activations_give_the_same_loss_and_gradients(tmp_path) -> None:
    from dsft.training.trainer import apply_liger_kernels

    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 600, (1, 25), generator=generator)
    batch = PackedCollator(pad_id=0)([pack_row([{"input_ids": ids[0].tolist(), "labels": ids[0].tolist()}])])
    results = []
    for offload in (False, True):
        model = _qwen().train()
        trainer = _trainer(model, tmp_path)
        trainer.offload_activations = offload
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)
    if not torch.cuda.is_available():
        assert apply_liger_kernels(_qwen()) is False  # Triton kernels: GPU only


def test_module_path_for_partitioned_weights_equals_reference() -> None:
    hidden, weight, bias, labels = _inputs()
    lm_head = torch.nn.Linear(24, weight.shape[0])
    with torch.no_grad():
        lm_head.weight.copy_(weight)
        lm_head.bias.copy_(bias)
    ours = supervised_cross_entropy_via_module(hidden, lm_head, labels, 137, chunk_size=9)
    ours.backward()  # reentrant checkpointing supports .backward(), not autograd.grad
    ours_grads = [t.grad.clone() for t in (hidden, lm_head.weight, lm_head.bias)]
    reference = reference_cross_entropy(hidden, lm_head.weight, labels, 137, lm_head_bias=lm_head.bias)
    reference_grads = torch.autograd.grad(reference, [hidden, lm_head.weight, lm_head.bias])
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    for got, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_no_grad_computes_no_gradient_for_a_trainable_lm_head() -> None:
    """Evaluation of a full fine-tune: lm_head requires grad, but under no_grad only the forward matmul runs.

    Each chunk's forward is one [rows x hidden] @ [hidden x vocab] matmul (2*N*H*V flops); the hidden and
    weight gradients would add two more of the same size (and a [vocab x hidden] fp32 buffer).
    """
    from torch.utils.flop_counter import FlopCounterMode

    hidden, weight, _, labels = _inputs(with_bias=False)
    supervised = int(labels[:, 1:].ne(-100).sum())
    forward_flops = 2 * supervised * hidden.shape[-1] * weight.shape[0]

    def flops(grad: bool) -> int:
        counter = FlopCounterMode(display=False)
        with torch.set_grad_enabled(grad), counter:
            supervised_cross_entropy(hidden, weight, labels, None, 16)
        return counter.get_total_flops()

    assert flops(grad=True) == 3 * forward_flops  # the counter sees the gradient matmuls when they run
    assert flops(grad=False) == forward_flops


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
@pytest.mark.parametrize("num_items", [None, 137])
@pytest.mark.parametrize("frozen_head", [False, True])
def test_label_smoothing_equals_torch_cross_entropy(smoothing: float, chunk_size: int, num_items: int | None,
                                                    frozen_head: bool) -> None:
    hidden, weight, bias, labels = _inputs(with_bias=not frozen_head)
    if frozen_head:  # the LoRA case: the shortcut that never forms [N, vocab] probabilities
        weight.requires_grad_(False)
    wrt = [t for t in (hidden, weight, bias) if t is not None and t.requires_grad]
    ours = supervised_cross_entropy(hidden, weight, labels, num_items, chunk_size, lm_head_bias=bias,
                                    label_smoothing=smoothing)
    ours_grads = torch.autograd.grad(ours, wrt)
    # Independent: full logits through F.cross_entropy(label_smoothing=...).
    reference = reference_cross_entropy(hidden, weight, labels, num_items, lm_head_bias=bias,
                                        label_smoothing=smoothing)
    reference_grads = torch.autograd.grad(reference, wrt)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    for got, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    plain = supervised_cross_entropy(hidden, weight, labels, num_items, chunk_size, lm_head_bias=bias)
    assert abs(ours.item() - plain.item()) > 1e-4  # the smoothing term is really applied


def test_label_smoothing_normalised_by_the_global_token_count() -> None:
    """Two micro-batches, each divided by the global supervised count, sum to the whole batch's mean."""
    hidden, weight, bias, labels = _inputs()
    total = int(labels[:, 1:].ne(-100).sum())
    parts = [supervised_cross_entropy(hidden[i : i + 1], weight, labels[i : i + 1], total, 5, lm_head_bias=bias,
                                      label_smoothing=0.1) for i in range(3)]
    whole = torch.nn.functional.cross_entropy(
        torch.nn.functional.linear(hidden, weight, bias)[:, :-1].reshape(-1, weight.shape[0]),
        labels[:, 1:].reshape(-1), ignore_index=-100, label_smoothing=0.1,
    )
    torch.testing.assert_close(sum(parts), whole, atol=1e-5, rtol=1e-5)


def test_label_smoothing_through_the_module_path() -> None:
    hidden, weight, bias, labels = _inputs()
    head = torch.nn.Linear(24, 1000)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    ours = supervised_cross_entropy_via_module(hidden, head, labels, 137, 11, label_smoothing=0.2)
    reference = reference_cross_entropy(hidden, weight, labels, 137, lm_head_bias=bias, label_smoothing=0.2)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_trainer_smooths_the_training_loss_only(tmp_path) -> None:
    model = _qwen()
    ids = torch.randint(0, 600, (2, 30), generator=torch.Generator().manual_seed(5))
    labels = ids.clone()
    labels[:, :10] = -100
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = DsftTrainer(model=model, args=args, data_collator=PackedCollator(pad_id=0), loss_chunk_size=5,
                          label_smoothing=0.1)
    rows = [pack_row([{"input_ids": r.tolist(), "labels": l.tolist()}]) for r, l in zip(ids, labels)]
    batch = PackedCollator(pad_id=0)(rows)
    logits = model(input_ids=ids, use_cache=False).logits[:, :-1].reshape(-1, 600)
    flat = labels[:, 1:].reshape(-1)
    model.train()
    smoothed = torch.nn.functional.cross_entropy(logits, flat, ignore_index=-100, label_smoothing=0.1)
    torch.testing.assert_close(trainer.compute_loss(model, batch), smoothed, atol=1e-5, rtol=1e-5)
    model.eval()
    plain = torch.nn.functional.cross_entropy(logits, flat, ignore_index=-100)
    torch.testing.assert_close(trainer.compute_loss(model, batch), plain, atol=1e-5, rtol=1e-5)
