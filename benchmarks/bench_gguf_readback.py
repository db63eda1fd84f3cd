"""Time the GGUF export's tensor check (``dsft.export.gguf_readback.check_gguf_tensors``) and its header read.

Not a test: run it by hand and quote the figures with the machine it ran on.

    OMP_NUM_THREADS=1 python benchmarks/bench_gguf_readback.py [--preset tiny-deepseek-v3] [--dtype q8_0]

Writes the tiny preset (random weights, the real tokenizer) as GGUF into a temporary directory, then prints
the CPU seconds of: reading the file's tensors with ``dsft.export.gguf_layout.read_tensors`` (what the check
does), parsing the same file with ``gguf.GGUFReader`` (what it did before: every metadata value as numpy
views, the tokenizer's tokens and merges included), and the whole check. CPU time, so a busy machine changes
the figures less than wall time would.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def cpu_seconds(work) -> float:  # noqa: ANN001 (any callable)
    start = time.process_time()
    work()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-deepseek-v3")
    parser.add_argument("--dtype", default="q8_0")
    args = parser.parse_args()

    import gguf

    from dsft.export.gguf_export import write_gguf
    from dsft.export.gguf_layout import read_tensors
    from dsft.export.gguf_readback import check_gguf_tensors
    from dsft.models.loading import load_model, load_tokenizer
    from dsft.models.resolve import resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = resolve_model(args.preset, cache_dir=Path(tmp) / "cache")
        model = load_model(model_dir, dtype="float32", device="cpu")
        path = Path(tmp) / "model.gguf"
        arch = write_gguf(model, load_tokenizer(model_dir), model_dir, path, args.dtype, args.preset)
        header = cpu_seconds(lambda: read_tensors(path))
        reader = cpu_seconds(lambda: gguf.GGUFReader(str(path)))
        check = cpu_seconds(lambda: check_gguf_tensors(path, model, arch, echo=lambda line: None))
        print(f"{args.preset} {args.dtype} ({path.stat().st_size / 2**20:.1f} MiB): read_tensors {header:.2f} "
              f"CPU-s, GGUFReader {reader:.2f} CPU-s, check_gguf_tensors {check:.2f} CPU-s")


if __name__ == "__main__":
    main()
