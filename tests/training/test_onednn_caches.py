"""dsft bounds the CPU kernel caches PyTorch's bf16 matmuls fill one shape at a time (dsft.onednn_caches).

Each case runs in a fresh interpreter: both caches read their capacity once, at the process's first oneDNN
matmul, so the pytest process (which may have run one) cannot show it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from dsft.onednn_caches import VARIABLES

# 600 bf16 matmuls, each with a number of rows not seen before (as packed rows and MoE routing give): how much
# the resident memory grew, in MiB. The entry point runs first, as it would in the command (argv[1]). The
# matrices are small: a cache entry is the kernel built for a shape, about the same size whatever the shape
# (measured unbounded here: 64 x 64 weights 367 MiB over the 600 shapes, 1.1 s of CPU; SmolLM2's 1536 x 576
# 565 MiB, 8.1 s).
GROWTH = """
import sys
{entry}
import ctypes
import torch
torch.set_num_threads(1)
trim = ctypes.CDLL("libc.so.6").malloc_trim
def rss():
    trim(0)  # what the caches hold, not where glibc left the pages of evicted kernels (training trims too)
    return int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20
weight = torch.randn(64, 64, dtype=torch.bfloat16)
(torch.randn(900, 64, dtype=torch.bfloat16) @ weight.t())
start = rss()
for rows in range(901, 1501):
    torch.randn(rows, 64, dtype=torch.bfloat16) @ weight.t()
print(rss() - start)
"""

ENTRIES = {
    "none": "",
    "command line": "from dsft.cli import app\ntry:\n    app.main(['--version'])\nexcept SystemExit:\n    pass",
    "library": "from dsft.onednn_caches import bound_onednn_caches\nbound_onednn_caches()",
}


def _growth_mib(entry: str, **environment: str) -> int:
    env = {name: value for name, value in os.environ.items() if name not in VARIABLES} | environment
    done = subprocess.run([sys.executable, "-c", GROWTH.format(entry=ENTRIES[entry])], capture_output=True, text=True,
                          env=env, check=True)
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not (sys.platform == "linux" and torch.backends.mkldnn.is_available()),
                    reason="the caches are oneDNN's (CPU bf16 matmuls through mkldnn), measured from Linux's /proc")
def test_bf16_matmuls_of_new_shapes_no_longer_grow_memory_without_bound() -> None:
    """Unbounded, each new shape kept its kernels (about 0.6 MiB here): a bf16 CPU run's memory grew by about
    50 MiB a step. The command line and the library both bound the caches; a user's own setting is kept."""
    cases = {"unbounded": ("none", {}), "command line": ("command line", {}), "library": ("library", {}),
             "user's own": ("command line", {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1024"})}
    with ThreadPoolExecutor(max_workers=2) as pool:  # separate processes, each measuring its own memory
        growth = dict(zip(cases, pool.map(lambda case: _growth_mib(case[0], **case[1]), cases.values())))
    unbounded = growth["unbounded"]
    if unbounded < 240:  # another oneDNN or CPU that keeps less per shape: nothing to show here
        pytest.skip(f"this torch/CPU grew {unbounded} MiB over 600 new shapes unbounded; the case needs >= 240")
    # Bounded, the growth is the 64 entries' (about 40 MiB here); unbounded about 0.6 MiB a shape (about 370 MiB).
    # Untrimmed, the bounded growth moved with where glibc's heap put the evicted kernels' pages (60-250 MiB).
    assert growth["command line"] < unbounded / 2, growth
    assert growth["library"] < unbounded / 2, growth
    assert growth["user's own"] > unbounded * 0.8, growth
