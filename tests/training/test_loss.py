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
    """The lm_head weight and bias get a zero gradient too, not none: DDP and ZeRO-1/2 reduce every trainable
    parameter's gradient in buckets, and a rank whose micro-batch (a sequence-parallel shard of prompt or padding)
    left the lm_head out reduced buckets of another size. Guide 003's full SFT under ZeRO-2 with SP 2 on two CPU
    processes aborted in gloo ('Received data size doesn't match expected size. 1046252 vs 996012')."""
    hidden, weight, bias, labels = _inputs()
    labels[:] = -100
    value = supervised_cross_entropy(hidden, weight, labels, None, 16, lm_head_bias=bias)
    value.backward()
    assert value.item() == 0.0 and hidden.grad.abs().sum().item() == 0.0
    assert weight.grad is not None and weight.grad.abs().sum().item() == 0.0
    assert bias.grad is not None and bias.grad.abs().sum().item() == 0.0


def test_logits_never_exceed_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    hidden, weight, _, labels = _inputs(with_bias=False)
    shapes: list[tuple[int, ...]] = []
    buffers: set[int] = set()
    real_project = loss_module._project

    def spying_project(h, w, b, out, low=None):  # noqa: ANN001, ANN202
        shapes.append(tuple(h.shape))
        buffers.add(out.untyped_storage().data_ptr())
        return real_project(h, w, b, out, low)

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
    # The weight's gradient is accumulated once per backward, as DeepSpeed ZeRO-3 requires (it reduces each
    # accumulation and refuses a second one); one inner backward per chunk accumulated it once per chunk.
    accumulated: list[int] = []
    lm_head.weight.register_post_accumulate_grad_hook(lambda parameter: accumulated.append(1))
    ours = supervised_cross_entropy_via_module(hidden, lm_head, labels, 137, chunk_size=9)
    ours.backward()
    assert len(accumulated) == 1 and "forward" not in lm_head.__dict__
    ours_grads = [t.grad.clone() for t in (hidden, lm_head.weight, lm_head.bias)]
    reference = reference_cross_entropy(hidden, lm_head.weight, labels, 137, lm_head_bias=lm_head.bias)
    reference_grads = torch.autograd.grad(reference, [hidden, lm_head.weight, lm_head.bias])
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    for got, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_module_path_calls_the_lm_head_and_reduces_its_gradient_without_supervised_tokens() -> None:
    """Under ZeRO-3 the lm_head call is a collective (DeepSpeed gathers the weight in its pre-forward hook) and so
    is the reduction of its gradient. A sequence-parallel shard holding only prompt or padding skipped the call
    while the other rank gathered: guide 003's full SFT on two CPU processes (ZeRO-3 + offload, SP 2) aborted in
    gloo ('Received data size doesn't match expected size. 4136960 vs 32', the tiny V3's bf16 lm_head)."""
    hidden, weight, _, labels = _inputs(with_bias=False)
    labels[:] = -100
    lm_head = torch.nn.Linear(24, weight.shape[0], bias=False)
    calls: list[int] = []
    lm_head.register_forward_pre_hook(lambda module, args: calls.append(1))
    accumulated: list[int] = []
    lm_head.weight.register_post_accumulate_grad_hook(lambda parameter: accumulated.append(1))
    value = supervised_cross_entropy_via_module(hidden, lm_head, labels, 137, chunk_size=9)
    value.backward()
    assert value.item() == 0.0 and calls == [1] and accumulated == [1] and "forward" not in lm_head.__dict__
    assert lm_head.weight.grad.abs().sum().item() == 0.0 and hidden.grad.abs().sum().item() == 0.0


def test_a_16_bit_lm_head_gets_its_gradient_without_a_full_size_fp32_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ZeRO-3 the lm_head weights are bf16 and the loss hands back its fp32 weight gradient times the
    incoming scale, cast to bf16. Forming that product whole made an fp32 [vocab, hidden] temporary beside the
    result (3.45 GiB on V3, at the start of backward); it is now formed a block of rows at a time, with the
    same single rounding."""
    from torch.utils._python_dispatch import TorchDispatchMode

    hidden, weight, _, labels = _inputs(with_bias=False)
    lm_head = torch.nn.Linear(24, weight.shape[0], bias=False).to(torch.bfloat16)
    with torch.no_grad():
        lm_head.weight.copy_(weight)
    hidden = hidden.detach().to(torch.bfloat16).requires_grad_()
    monkeypatch.setattr(loss_module, "SCALE_CAST_BLOCK_BYTES", 64 * 24 * 4)  # 64 rows per block

    class FullSizeFp32(TorchDispatchMode):
        shapes: list[tuple[int, ...]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32 and tensor.numel() >= weight.numel():
                    self.shapes.append(tuple(tensor.shape))
            return out

    loss = supervised_cross_entropy_via_module(hidden, lm_head, labels, 137, chunk_size=9)
    scale = torch.tensor(0.37)
    with FullSizeFp32() as seen:
        (loss * scale).backward()
    assert seen.shapes == [], f"backward formed fp32 tensors of the weight's size: {seen.shapes}"
    weight32 = lm_head.weight.detach().float().requires_grad_()
    expected = torch.autograd.grad(reference_cross_entropy(hidden.detach().float(), weight32, labels, 137) * scale,
                                   weight32)[0]
    assert lm_head.weight.grad.dtype == torch.bfloat16
    torch.testing.assert_close(lm_head.weight.grad.float(), expected, atol=2e-3, rtol=1e-2)


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


# bf16 lm_head matmuls (train.loss_dtype: bf16; softmax, log-sum-exp and the loss in fp32). Tolerances from
# measurement: over these inputs (10 seeds x chunk sizes 1/7/64/4,096 x smoothing 0/0.1 x frozen/trainable
# head, 160 cases) the loss differed from the fp32 reference by at most 1.3e-4 relative and every
# gradient by at most 3.3e-3 in relative norm (bf16's unit roundoff is 2^-9 = 2.0e-3); on the benchmark's
# real head shapes by at most 6.6e-5 and 3.1e-3 (docs/performance.md). The bounds below leave a 3-7x
# margin and still fail on any real mistake (a missing term moves the gradient by order 1).
BF16_LOSS_RTOL = 1e-3
BF16_GRAD_NORM_RTOL = 1e-2


def _relative_norm(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected.float()).norm() / expected.float().norm())


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("frozen_head", [False, True])
def test_bf16_matmuls_match_the_fp32_reference_within_bf16_rounding(chunk_size: int, smoothing: float,
                                                                   frozen_head: bool) -> None:
    hidden, weight, bias, labels = _inputs(seed=chunk_size)
    if frozen_head:
        weight.requires_grad_(False)
        bias = None
    wrt = [t for t in (hidden, weight, bias) if t is not None and t.requires_grad]
    ours = supervised_cross_entropy(hidden, weight, labels, 137, chunk_size, lm_head_bias=bias,
                                    label_smoothing=smoothing, compute_dtype=torch.bfloat16)
    ours_grads = torch.autograd.grad(ours, wrt)
    reference = reference_cross_entropy(hidden, weight, labels, 137, lm_head_bias=bias, label_smoothing=smoothing)
    reference_grads = torch.autograd.grad(reference, wrt)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, atol=0.0, rtol=BF16_LOSS_RTOL)
    for got, expected in zip(ours_grads, reference_grads):
        assert got.dtype == expected.dtype
        assert _relative_norm(got, expected) < BF16_GRAD_NORM_RTOL
    # The bf16 matmuls really ran: the fp32 loss on the same inputs differs from it.
    fp32 = supervised_cross_entropy(hidden, weight, labels, 137, chunk_size, lm_head_bias=bias,
                                    label_smoothing=smoothing, compute_dtype=torch.float32)
    assert fp32.item() != ours.item()


def test_bf16_loss_keeps_small_losses_and_huge_ones_exact_in_fp32() -> None:
    """The loss is log-sum-exp minus the target logit in fp32: a near-certain target (loss 1e-6) is not
    rounded to 0 and an impossible one (probability below fp32's range, loss ~200) is not infinite."""
    hidden = torch.zeros(1, 3, 4)
    weight = torch.zeros(50, 4)
    weight[7, 0] = 1.0
    hidden[0, 0, 0], hidden[0, 1, 0] = 16.0, -200.0  # targets: 7 (certain), 7 again (impossible)
    labels = torch.tensor([[-100, 7, 7]])
    for dtype in (torch.float32, torch.bfloat16):
        ours = supervised_cross_entropy(hidden, weight, labels, None, 2, compute_dtype=dtype) * 2
        reference = reference_cross_entropy(hidden, weight, labels) * 2
        assert torch.isfinite(ours)
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
        certain = supervised_cross_entropy(hidden[:, :2], weight, labels[:, :2], None, 2, compute_dtype=dtype)
        assert 0 < certain.item() < 1e-5  # 49 * exp(-16) = 5.5e-6


def test_loss_dtype_auto_is_the_weights_dtype_and_bf16_is_asked_for() -> None:
    head = torch.empty(129_280, 64)
    small = torch.empty(600, 32)
    assert loss_module.resolve_loss_dtype("fp32", head.bfloat16()) == torch.float32
    assert loss_module.resolve_loss_dtype("bf16", small) == torch.bfloat16
    assert loss_module.resolve_loss_dtype("auto", head.bfloat16()) == torch.bfloat16
    # fp32 weights keep an fp32 head by default, on a CPU with bf16 instructions too (a LoRA fine-tune of a
    # real model learned less with a bf16 head on average over seeds: docs/performance.md).
    assert loss_module.resolve_loss_dtype("auto", head) == torch.float32
    with pytest.raises(ValueError, match="loss_dtype"):
        loss_module.resolve_loss_dtype("fp16", head)


def test_bf16_loss_on_a_cpu_without_bf16_instructions_is_warned_about(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    from dsft.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_multiplies_bf16", lambda: False)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    with caplog.at_level("WARNING", logger="dsft.training.trainer"):
        DsftTrainer(model=_qwen(), args=args, loss_dtype="bf16")
        assert "emulated" in caplog.text
        caplog.clear()
        DsftTrainer(model=_qwen(), args=args, loss_dtype="auto")
        assert "emulated" not in caplog.text


def test_trainer_runs_the_loss_in_the_configured_dtype(tmp_path) -> None:
    model = _qwen()
    ids = torch.randint(0, 600, (2, 30), generator=torch.Generator().manual_seed(6))
    labels = ids.clone()
    labels[:, :10] = -100
    batch = PackedCollator(pad_id=0)([pack_row([{"input_ids": r.tolist(), "labels": l.tolist()}])
                                      for r, l in zip(ids, labels)])
    expected = model(input_ids=ids, labels=labels, use_cache=False).loss
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    losses = {}
    for setting in ("fp32", "bf16"):
        trainer = DsftTrainer(model=model, args=args, data_collator=PackedCollator(pad_id=0), loss_chunk_size=5,
                              loss_dtype=setting)
        assert trainer.loss_compute_dtype == loss_module.LOSS_DTYPES[setting]
        losses[setting] = trainer.compute_loss(model, dict(batch)).detach()
    torch.testing.assert_close(losses["fp32"], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses["bf16"], expected, atol=0.0, rtol=BF16_LOSS_RTOL)
    assert losses["bf16"].item() != losses["fp32"].item()


@pytest.mark.parametrize(("key", "values"), [("loss_dtype", ("fp32", "bf16", "auto")),
                                             ("compact_cpu_memory", (True, False))])
def test_train_step_keys_reach_the_run_trainer(monkeypatch: pytest.MonkeyPatch, tmp_path, key: str,
                                               values: tuple) -> None:
    from types import SimpleNamespace

    from dsft.config import load_config
    from dsft.training import run as run_module

    seen: dict = {}

    class Recorder:
        def __init__(self, **kwargs) -> None:  # noqa: ANN003
            seen.update(kwargs)

        def remove_callback(self, callback) -> None:  # noqa: ANN001
            pass

    monkeypatch.setattr(run_module, "RunTrainer", Recorder)
    splits = {"train": SimpleNamespace(examples=[]), "val": SimpleNamespace(examples=[])}
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    for value in values:
        cfg = load_config(None, [f"train.{key}={str(value).lower()}"])
        run_module._build_trainer(cfg, tmp_path, _qwen(), tokenizer, splits, [], counter=None)
        assert seen[key] == value


def test_loss_dtype_is_refused_for_objectives_whose_loss_trl_computes() -> None:
    from dsft.config import load_config
    from dsft.training.objective_checks import objective_problems

    problems = objective_problems(load_config(None, ["train.objective=dpo", "train.loss_dtype=bf16"]))
    assert any(p.startswith("train.loss_dtype: belongs to dsft's SFT loss") for p in problems)
    assert not any("loss_dtype" in p for p in objective_problems(load_config(None, ["train.objective=dpo"])))
