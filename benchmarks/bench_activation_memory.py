"""Where a dsft training step's memory goes: weights, the tensors autograd saves (per layer, by the op
that saved them), the loss, and the gap between what is allocated and the process's resident set.

Not a test: run it by hand and quote the figures with the machine they ran on.

    python benchmarks/bench_activation_memory.py --model PATH.gguf [--method lora|full] [--seq-len 2048]
                                                 [--stock] [--no-pool] [--gradient-checkpointing]
                                                 [--timing-steps N] [--json OUT.json]

One packed row of ``--seq-len`` tokens of the benchmark's short-answer data (as ``dsft bench train``
builds it), one thread, one warm-up step (forward, dsft's chunked loss, backward), then one measured step:

* **weights**: parameters and buffers, counted once per storage (a tied head is counted once);
* **saved by autograd**: every tensor packed by ``torch.autograd.graph.saved_tensors_hooks`` during the
  forward, deduplicated by storage, attributed to the innermost module that was running and to the
  autograd nodes that hold it (``grad_fn`` names, from a walk of the graph); shown for one middle layer
  and summed over all layers, in bytes per token per layer;
* **heap in use**: glibc's ``mallinfo2`` (arena bytes in use + mmapped bytes) before the step, after the
  body's forward, after the loss, at the start of each layer's backward (its maximum is the allocated
  peak), and after backward; against the process's resident set (``VmRSS``) and its peak during the
  measured step (``VmHWM``, reset through ``/proc/self/clear_refs`` before the step).

``--stock`` runs transformers' and peft's own modules and per-segment sdpa (dsft's lean blocks off) without
the saved-activation pool and the heap release; ``--no-pool`` the lean blocks without them (what
``DsftTrainer`` does on a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import re
import time
import weakref
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from dsft.config.schema import LoraConfig
from dsft.models.loading import load_model, load_tokenizer
from dsft.models.lora import apply_lora
from dsft.models.resolve import resolve_model
from dsft.training.bench.synthetic import first_packed_row
from dsft.training.lean_activations import use_lean_activations
from dsft.training.heap_release import RELEASES_PER_PASS, HeapRelease
from dsft.training.loss import auto_chunk_size, resolve_loss_dtype, supervised_cross_entropy
from dsft.training import segment_attention
from dsft.training.saved_activation_pool import SavedActivationPool
from dsft.training.segment_attention import select_segment_attention
from dsft.training.trainer import forward_hidden_states

MODEL_INPUTS = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
MIB = 2**20
_LAYER = re.compile(r"\.layers\.(\d+)\.")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = MallInfo2


def heap_in_use() -> int:
    """Bytes malloc has handed out and not got back: arena chunks in use + mmapped chunks."""
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def malloc_state() -> dict[str, int]:
    """glibc's view: bytes obtained with brk/arenas (``arena``), free inside them (``fordblks``), mmapped."""
    info = _LIBC.mallinfo2()
    return {"arena": int(info.arena), "arena_free": int(info.fordblks), "mmapped": int(info.hblkhd)}


def rss_parts() -> dict[str, int]:
    return {key: proc_status(key) for key in ("VmRSS", "RssAnon", "RssFile")}


def proc_status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS


def weight_bytes(model: torch.nn.Module) -> dict[str, int]:
    seen: dict[int, int] = {}
    trainable = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    for parameter in model.parameters():
        if parameter.requires_grad:
            trainable += parameter.numel() * parameter.element_size()
    return {"weights_bytes": sum(seen.values()), "trainable_bytes": trainable}


class SavedTensorLedger:
    """Storages autograd saved during a forward, with the module that was running when each was saved."""

    def __init__(self, model: torch.nn.Module, pool: SavedActivationPool | None) -> None:
        self.pool = pool
        self.by_copy: dict[int, dict[str, Any]] = {}
        self.live: dict[int, tuple[Any, int]] = {}
        self.live_keys: list[int] = []
        self.stack: list[str] = []
        self.saved: dict[int, dict[str, Any]] = {}
        self.weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(lambda _m, _a, n=name: self.stack.append(n)))
            self.handles.append(module.register_forward_hook(self._leave))

    def _leave(self, _module: Any, _args: Any, _output: Any) -> None:
        self.stack.pop()  # a forward hook that returned a value would replace the module's output

    def pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        # An address can be freed and reused within the forward (the pool frees originals): a storage is
        # the same one only while a weak reference to it is alive.
        known = self.live.get(address)
        if known is not None and known[0]() is storage:
            key = known[1]
        else:
            key = len(self.live_keys)
            self.live_keys.append(address)
            self.live[address] = (weakref.ref(storage), key)
        if address not in self.weights and key not in self.saved and storage.nbytes() > 0:
            self.saved[key] = {"module": self.stack[-1] if self.stack else "(outside modules)",
                               "bytes": storage.nbytes(), "shape": list(tensor.shape), "dtype": str(tensor.dtype),
                               "ops": set()}
        if self.pool is None:
            return tensor
        packed = self.pool.pack(tensor)
        if not isinstance(packed, torch.Tensor) and key in self.saved:
            self.by_copy[packed[1].data_ptr()] = self.saved[key]  # backward will see the pool's copy
        return packed

    def unpack(self, packed: Any) -> torch.Tensor:
        return packed if self.pool is None else self.pool.unpack(packed)

    def _entry(self, tensor: torch.Tensor) -> dict[str, Any] | None:
        storage = tensor.untyped_storage()
        known = self.live.get(storage.data_ptr())
        entry = self.saved.get(known[1]) if known is not None and known[0]() is storage else None
        if entry is None:
            entry = self.by_copy.get(tensor.data_ptr() - tensor.storage_offset() * tensor.element_size())
        return entry

    def attribute_ops(self, root: Any) -> None:
        """Walk the autograd graph from ``root`` and name, for each saved storage, the nodes holding it."""
        seen, todo = set(), [root]
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            for attribute in dir(node):
                if not attribute.startswith("_saved_"):
                    continue
                try:
                    value = getattr(node, attribute)
                except RuntimeError:  # freed or not saved for this call
                    continue
                values = value if isinstance(value, (tuple, list)) else [value]
                for tensor in values:
                    if isinstance(tensor, torch.Tensor):
                        entry = self._entry(tensor)
                        if entry is not None:
                            entry["ops"].add(node.name())
            if hasattr(node, "saved_tensors") and not node.name().endswith("Backward0"):
                try:
                    for tensor in node.saved_tensors:
                        entry = self._entry(tensor) if tensor is not None else None
                        if entry is not None:
                            entry["ops"].add(node.name())
                except RuntimeError:
                    pass
            todo.extend(next_node for next_node, _ in node.next_functions)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def layer_breakdown(saved: dict[int, dict[str, Any]], layer: int, tokens: int) -> list[dict[str, Any]]:
    rows = []
    for entry in saved.values():
        match = _LAYER.search(entry["module"] + ".")
        if match and int(match.group(1)) == layer:
            module = entry["module"].split(f".layers.{layer}.", 1)[1]
            rows.append({"module": module, "ops": sorted(entry["ops"]), "shape": entry["shape"],
                         "dtype": entry["dtype"], "bytes_per_token": entry["bytes"] / tokens})
    return sorted(rows, key=lambda r: -r["bytes_per_token"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model_dir = resolve_model(args.model)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, device="cpu")
    model.config.use_cache = False
    select_segment_attention(model, packing=True)
    if args.method == "lora":
        model = apply_lora(model, LoraConfig())
    lean = [] if args.stock else [*use_lean_activations(model), "segment_flash_attention", "saved_activation_pool"]
    if args.stock:  # per-segment sdpa, as before SegmentFlashAttentionFunction
        segment_attention._cpu_flash_usable = lambda query, dropout: False
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if args.method == "lora":
            model.enable_input_require_grads()
    pool = None if args.stock or args.no_pool else SavedActivationPool()
    if pool is None and not args.stock:
        lean.remove("saved_activation_pool")
    elif pool is not None:  # as DsftTrainer does on CPU
        HeapRelease((model.get_base_model() if args.method == "lora" else model).get_decoder().layers,
                    passes=args.releases_per_pass)
        lean.append("heap_release")
    model.train()
    batch = first_packed_row(tokenizer, args.seq_len, candidates=60)
    inputs = {key: value for key, value in batch.items() if key in MODEL_INPUTS}
    tokens = int(batch["input_ids"].numel())
    weight = model.get_output_embeddings().weight
    chunk, loss_dtype = auto_chunk_size(weight.shape[0], "cpu"), resolve_loss_dtype("auto", weight)
    body = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = body.get_decoder().layers

    def step(ledger: SavedTensorLedger | None, marks: dict[str, int], backward_heap: list[int]) -> None:
        with pool.saving(model) if pool is not None else contextlib.nullcontext():
            if ledger is None:
                hidden, _ = forward_hidden_states(model, inputs)
            else:
                with torch.autograd.graph.saved_tensors_hooks(ledger.pack, ledger.unpack):
                    hidden, _ = forward_hidden_states(model, inputs)
        marks["after_body_forward"] = heap_in_use()
        loss = supervised_cross_entropy(hidden, weight, batch["labels"], None, chunk_size=chunk,
                                        compute_dtype=loss_dtype)
        marks["after_loss_forward"] = heap_in_use()
        if ledger is not None:
            ledger.attribute_ops(loss.grad_fn)
        loss.backward()
        marks["after_backward"] = heap_in_use()
        model.zero_grad(set_to_none=True)

    backward_heap: list[int] = []

    def sample_on_backward(layer: torch.nn.Module, _args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.requires_grad:
            hidden.register_hook(lambda grad: backward_heap.append(heap_in_use()))

    handles = [layer.register_forward_hook(sample_on_backward) for layer in layers]
    state_loaded = {"malloc": malloc_state(), "rss": rss_parts()}
    step(None, {}, [])  # warm-up: allocator and kernels in their steady state
    backward_heap.clear()
    ledger = SavedTensorLedger(model, pool)
    marks: dict[str, int] = {"before_step": heap_in_use()}
    rss_before = proc_status("VmRSS")
    state_before = {"malloc": malloc_state(), "rss": rss_parts()}
    reset_peak_rss()
    started = time.process_time()
    step(ledger, marks, backward_heap)
    step_cpu_seconds = time.process_time() - started
    peak_rss = proc_status("VmHWM")
    state_after = {"malloc": malloc_state(), "rss": rss_parts()}
    ledger.close()
    for handle in handles:
        handle.remove()
    timed: list[float] = []
    reset_peak_rss()
    for _ in range(args.timing_steps):  # no ledger, no sampling: the step as training runs it
        started = time.process_time()
        step(None, {}, [])
        timed.append(time.process_time() - started)
    timed_peak_rss = proc_status("VmHWM") if timed else None

    saved_total = sum(e["bytes"] for e in ledger.saved.values())
    per_layer: dict[int, int] = defaultdict(int)
    outside = 0
    for entry in ledger.saved.values():
        match = _LAYER.search(entry["module"] + ".")
        if match:
            per_layer[int(match.group(1))] += entry["bytes"]
        else:
            outside += entry["bytes"]
    middle = len(layers) // 2
    peak_heap = max([*backward_heap, *marks.values()])
    return {
        "model": args.model, "method": args.method, "tokens": tokens, "layers": len(layers),
        "lean_modules": lean, "gradient_checkpointing": args.gradient_checkpointing,
        **weight_bytes(model),
        "saved_bytes_total": saved_total,
        "saved_bytes_outside_layers": outside,
        "saved_bytes_per_token_per_layer": {str(k): v / tokens for k, v in sorted(per_layer.items())},
        "layer_detail": {"layer": middle, "tensors": layer_breakdown(ledger.saved, middle, tokens)},
        "heap_in_use": marks | {"peak_in_backward": max(backward_heap) if backward_heap else None},
        "heap_peak_above_before_step": peak_heap - marks["before_step"],
        "pool_bytes": pool.pooled_bytes if pool is not None else 0,
        "step_cpu_seconds": step_cpu_seconds, "rss_before_step": rss_before,
        "timed_steps_cpu_seconds": timed, "timed_steps_peak_rss": timed_peak_rss,
        "state_after_load": state_loaded, "state_before_step": state_before, "state_after_step": state_after,
        "peak_rss_in_step": peak_rss,
        "peak_rss_minus_peak_heap": peak_rss - peak_heap,
    }


def print_report(report: dict[str, Any]) -> None:
    tokens, layers = report["tokens"], report["layers"]
    print(f"{report['model']} ({report['method']}, {tokens} tokens, {layers} layers, lean: "
          f"{', '.join(report['lean_modules']) or 'off'}, checkpointing: {report['gradient_checkpointing']})")
    print(f"weights {report['weights_bytes'] / MIB:,.0f} MiB (trainable {report['trainable_bytes'] / MIB:,.1f} MiB)")
    per_layer = report["saved_bytes_per_token_per_layer"]
    values = list(per_layer.values())
    print(f"saved by autograd: {report['saved_bytes_total'] / MIB:,.0f} MiB in all; "
          f"{report['saved_bytes_outside_layers'] / MIB:,.1f} MiB outside the layers; per token per layer "
          f"{min(values, default=0):,.0f}-{max(values, default=0):,.0f} bytes")
    detail = report["layer_detail"]
    print(f"layer {detail['layer']}, bytes per token, by module and the autograd nodes holding them:")
    for row in detail["tensors"]:
        print(f"  {row['bytes_per_token']:8,.0f}  {row['module']:<34} {'x'.join(map(str, row['shape'])):<16} "
              f"{row['dtype']:<14} {', '.join(row['ops'])}")
    heap = report["heap_in_use"]
    print("heap in use (MiB): " + ", ".join(f"{k} {v / MIB:,.0f}" for k, v in heap.items() if v is not None))
    print(f"peak RSS in the step {report['peak_rss_in_step'] / MIB:,.0f} MiB (RSS before it "
          f"{report['rss_before_step'] / MIB:,.0f}); peak RSS - peak heap in use "
          f"{report['peak_rss_minus_peak_heap'] / MIB:,.0f} MiB")
    print(f"measured step: {report['step_cpu_seconds']:.1f} CPU s (with the ledger's hooks); saved-activation "
          f"pool {report['pool_bytes'] / MIB:,.0f} MiB (outside the heap)")
    if report["timed_steps_cpu_seconds"]:
        print(f"{len(report['timed_steps_cpu_seconds'])} further steps without the ledger: CPU s "
              f"{', '.join(f'{t:.2f}' for t in report['timed_steps_cpu_seconds'])}; their peak RSS "
              f"{report['timed_steps_peak_rss'] / MIB:,.0f} MiB")
    for when in ("after_load", "before_step", "after_step"):
        state = report[f"state_{when}"]
        print(f"{when} (MiB): " + ", ".join(f"{k} {v / MIB:,.0f}" for part in state.values()
                                                       for k, v in part.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-deepseek-v3")
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--stock", action="store_true", help="transformers' and peft's modules as shipped")
    parser.add_argument("--no-pool", action="store_true", help="lean blocks without the saved-activation pool")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--releases-per-pass", type=int, default=RELEASES_PER_PASS,
                        help="heap releases per forward and per backward (DsftTrainer's default)")
    parser.add_argument("--timing-steps", type=int, default=0,
                        help="then time this many steps without the ledger (CPU seconds each, their peak RSS)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = measure(args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
