"""The benchmark figures the docs quote equal the JSON reports they link, at the rounding the doc shows.

A report written by ``dsft bench train`` (``dsft.training.bench.runner``) holds, per system under
``systems.<name>``: ``supervised_tokens_per_s``, ``tokens_per_s``, ``supervised_tokens_per_cpu_s``,
``peak_memory_bytes`` (peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU; the docs give MiB
or GiB, 2**20 or 2**30 bytes), ``mfu`` and on CPU ``mfu_cpu`` (fractions), ``cpu_seconds``; and dsft against each other system X: ``ratios.vs_X`` (supervised tokens/s),
``memory_ratios.vs_X`` (peak memory) and ``cpu_time_ratios.vs_X`` (supervised tokens per CPU-second).

Tables: every markdown table row of docs/performance.md that links a report (or follows a row that does)
is checked column by column through COLUMNS. Prose: FIGURES lists the figures README.md and
docs/performance.md state outside tables. The report is the record: a mismatch is a doc defect.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PERFORMANCE = ROOT / "docs" / "performance.md"
README = ROOT / "README.md"
REPORT_LINK = re.compile(r"\]\((bench/[^)\s]+\.json)\)")
MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
GIB, MIB = 2 ** 30, 2 ** 20

Figure = tuple[str, float]  # (what the report key is, its value in the doc's unit)


def system(report: dict, name: str) -> dict:
    return report["systems"][name]


def sup(name: str) -> Callable[[dict, str], list[Figure]]:
    return lambda r, _: [(f"systems.{name}.supervised_tokens_per_s", system(r, name)["supervised_tokens_per_s"])]


def sup_cpu(name: str) -> Callable[[dict, str], list[Figure]]:
    return lambda r, _: [(f"systems.{name}.supervised_tokens_per_cpu_s",
                          system(r, name)["supervised_tokens_per_cpu_s"])]


def rss_mib(name: str) -> Callable[[dict, str], list[Figure]]:
    return lambda r, _: [(f"systems.{name}.peak_memory_bytes / MiB", system(r, name)["peak_memory_bytes"] / MIB)]


def mfu_cpu(name: str) -> Callable[[dict, str], list[Figure]]:
    return lambda r, _: [(f"systems.{name}.mfu_cpu in %", 100 * system(r, name)["mfu_cpu"])]


def ratio(kind: str, other: str) -> Callable[[dict, str], list[Figure]]:
    return lambda r, _: [(f"{kind}.vs_{other}", r[kind][f"vs_{other}"])]


def then(*parts: Callable[[dict, str], list[Figure]]) -> Callable[[dict, str], list[Figure]]:
    """A cell stating several figures in this order (the doc may stop after any of them)."""
    return lambda r, s: [figure for part in parts for figure in part(r, s)]


# table header -> the figures its cells state, from (report, the row's system: first word of its
# "system" cell). Columns not listed here (run, system, machine) state no report figure.
COLUMNS: dict[str, Callable[[dict, str], list[Figure]]] = {
    "supervised tok/s": lambda r, s: sup(s)(r, s),
    "tok/s": lambda r, s: [(f"systems.{s}.tokens_per_s", system(r, s)["tokens_per_s"])],
    "peak memory": lambda r, s: [(f"systems.{s}.peak_memory_bytes / GiB", system(r, s)["peak_memory_bytes"] / GIB)],
    "MFU": lambda r, s: [(f"systems.{s}.mfu in %", 100 * system(r, s)["mfu"])],
    "dsft / system": lambda r, s: then(ratio("ratios", s), ratio("memory_ratios", s))(r, s),
    "dsft sup. tok/s": sup("dsft"),
    "trl-expert": sup("trl-expert"),
    "seed": sup("seed"),
    "dsft / trl-expert (wall, CPU-s)": then(ratio("ratios", "trl-expert"), ratio("cpu_time_ratios", "trl-expert")),
    "dsft / seed (wall, CPU-s)": then(ratio("ratios", "seed"), ratio("cpu_time_ratios", "seed")),
    "memory dsft / trl-expert": then(ratio("memory_ratios", "trl-expert"), rss_mib("dsft"), rss_mib("trl-expert")),
    "dsft sup. tok / CPU-s": sup_cpu("dsft"),
    "dsft peak RSS": rss_mib("dsft"),
    "TRL-expert sup. tok / CPU-s": sup_cpu("trl-expert"),
    "TRL-expert peak RSS": rss_mib("trl-expert"),
    "dsft / TRL-expert per CPU-s": ratio("cpu_time_ratios", "trl-expert"),
    "memory": ratio("memory_ratios", "trl-expert"),
    "sup. tok / CPU-s": lambda r, s: sup_cpu(s)(r, s),
    "CPU-s": lambda r, s: [(f"systems.{s}.cpu_seconds", system(r, s)["cpu_seconds"])],
    "sup. tok/s (wall)": lambda r, s: sup(s)(r, s),
    "peak RSS": lambda r, s: rss_mib(s)(r, s),
    "dsft / system per CPU-s (wall)": lambda r, s: then(ratio("cpu_time_ratios", s), ratio("ratios", s))(r, s),
    "memory dsft / system": lambda r, s: ratio("memory_ratios", s)(r, s),
    "`mfu_cpu`": lambda r, s: mfu_cpu(s)(r, s),
}

# First words of "system" cells that are not the report's system names; and rows the doc says no report holds.
SYSTEM_NAMES = {"TRL": "trl", "seeds'": "seed"}
NO_REPORT = {"LLaMA-Factory"}

GPU = "bench/gpu/h200-7b-lora-"
# Figures stated in prose: (file, the exact phrase, report, figures the phrase's numbers state in order).
FIGURES: list[tuple[Path, str, str, Callable[[dict, str], list[Figure]]]] = [
    (README, "dsft at **53.2% MFU**", GPU + "2026-11-27.json",
     lambda r, _: [("systems.dsft.mfu in %", 100 * r["systems"]["dsft"]["mfu"])]),
    (README, "(43.1% on", GPU + "casts-2026-11-26.json",
     lambda r, _: [("systems.dsft.mfu in %", 100 * r["systems"]["dsft"]["mfu"])]),
    (README, "**1.29x** its supervised tokens/s at 0.88x its peak", GPU + "2026-11-27.json",
     then(ratio("ratios", "trl-expert-varlen"), ratio("memory_ratios", "trl-expert-varlen"))),
    (README, "and 3.46x TRL-expert on", GPU + "trl-expert-varlen-2026-11-26.json", ratio("ratios", "trl-expert")),
    (README, "**31x TRL-expert** in supervised tokens/s (21x per CPU-second) and 31x the pad-to-max recipe",
     "bench/train-cpu-2026-11-26-short.json",
     then(ratio("ratios", "trl-expert"), ratio("cpu_time_ratios", "trl-expert"), ratio("ratios", "seed"))),
    (README, "at **0.23x TRL-expert's peak memory**", "bench/train-cpu-2026-11-26-short.json",
     ratio("memory_ratios", "trl-expert")),
    (README, "14.1x TRL-expert and 7.5x the recipe per CPU-second, 0.25x its memory",
     "bench/train-cpu-2026-11-26-reasoning-rerun.json",
     then(ratio("cpu_time_ratios", "trl-expert"), ratio("cpu_time_ratios", "seed"),
          ratio("memory_ratios", "trl-expert"))),
    (README, "53.5x per CPU-second at 0.15x memory", "bench/train-cpu-2026-11-26-short-trl-defaults.json",
     then(ratio("cpu_time_ratios", "trl"), ratio("memory_ratios", "trl"))),
    (README, "**1.76x TRL-expert** (quiet machine)", "bench/shapes/smollm2-short-lean-quiet-2026-11-26.json",
     ratio("cpu_time_ratios", "trl-expert")),
    (README, "**0.36x TRL-expert's peak memory**", "bench/shapes/smollm2-short-lean-quiet-2026-11-26.json",
     ratio("memory_ratios", "trl-expert")),
    (PERFORMANCE, "dsft 1,073 supervised tokens per CPU-s\n(757 MiB), TRL defaults 20.1 (5,022 MiB",
     "bench/train-cpu-2026-11-26-short-trl-defaults.json",
     then(sup_cpu("dsft"), rss_mib("dsft"), sup_cpu("trl"), rss_mib("trl"))),
    (PERFORMANCE, "**53.5x per CPU-second** (16.7x wall) at **0.15x its memory**",
     "bench/train-cpu-2026-11-26-short-trl-defaults.json",
     then(ratio("cpu_time_ratios", "trl"), ratio("ratios", "trl"), ratio("memory_ratios", "trl"))),
    (PERFORMANCE, "dsft\n1,710 supervised tokens per CPU-s (774 MiB), TRL-expert 121 (3,115 MiB), the seed recipe 227 (4,023\nMiB)",
     "bench/train-cpu-2026-11-26-reasoning-rerun.json",
     then(sup_cpu("dsft"), rss_mib("dsft"), sup_cpu("trl-expert"), rss_mib("trl-expert"),
          sup_cpu("seed"), rss_mib("seed"))),
    (PERFORMANCE, "**14.1x TRL-expert and 7.5x the recipe per CPU-second** (7.8x and 2.1x wall",
     "bench/train-cpu-2026-11-26-reasoning-rerun.json",
     then(ratio("cpu_time_ratios", "trl-expert"), ratio("cpu_time_ratios", "seed"),
          ratio("ratios", "trl-expert"), ratio("ratios", "seed"))),
    (PERFORMANCE, "memory **0.25x** and 0.19x", "bench/train-cpu-2026-11-26-reasoning-rerun.json",
     then(ratio("memory_ratios", "trl-expert"), ratio("memory_ratios", "seed"))),
    (PERFORMANCE, "its 21.7 supervised tokens per CPU-second here", "bench/shapes/smollm2-short-bf16-2026-11-26.json",
     sup_cpu("trl-expert")),
    (PERFORMANCE, "| 33.8 | **65.3%** | 6,922 MiB |", "bench/shapes/smollm2-short-dsft-bf16-loss.json",
     then(sup_cpu("dsft"), mfu_cpu("dsft"), rss_mib("dsft"))),
    (PERFORMANCE, "| 32.6 | 64.1% | 6,962 MiB |", "bench/shapes/smollm2-short-dsft-fp32-loss.json",
     then(sup_cpu("dsft"), mfu_cpu("dsft"), rss_mib("dsft"))),
    (PERFORMANCE, "37.0 supervised tokens per CPU-s, `mfu_cpu` **71.0%**, 4,527 MiB",
     "bench/shapes/qwen2-h1024-short-dsft.json", then(sup_cpu("dsft"), mfu_cpu("dsft"), rss_mib("dsft"))),
    (PERFORMANCE, ("dsft 37.3 supervised tokens per\nCPU-s (`mfu_cpu` 73.1%, 4,655 MiB), TRL-expert 9.3 (`mfu_cpu` "
                   "22.3%, 6,301 MiB): **4.0x TRL-expert per\nCPU-second at 0.74x its memory**"),
     "bench/shapes/qwen2-h1024-short-2026-11-26.json",
     then(sup_cpu("dsft"), mfu_cpu("dsft"), rss_mib("dsft"), sup_cpu("trl-expert"), mfu_cpu("trl-expert"),
          rss_mib("trl-expert"), ratio("cpu_time_ratios", "trl-expert"), ratio("memory_ratios", "trl-expert"))),
    (PERFORMANCE, ("dsft\n85.4 supervised tokens per CPU-s (`mfu_cpu` 66.9%, 4,346 MiB), TRL-expert 33.3 (`mfu_cpu` "
                   "40.1%,\n5,793 MiB): **2.56x per CPU-second** (3.17x wall) at 0.75x its memory"),
     "bench/shapes/qwen2-h1024-reasoning-small-2026-11-26.json",
     then(sup_cpu("dsft"), mfu_cpu("dsft"), rss_mib("dsft"), sup_cpu("trl-expert"), mfu_cpu("trl-expert"),
          rss_mib("trl-expert"), ratio("cpu_time_ratios", "trl-expert"), ratio("ratios", "trl-expert"),
          ratio("memory_ratios", "trl-expert"))),
]


def plain(cell: str) -> str:
    """The cell's text without emphasis, code marks and links' targets."""
    return MARKDOWN_LINK.sub(r"\1", cell).replace("**", "").replace("`", "").strip()


def numbers(text: str) -> list[str]:
    return NUMBER.findall(plain(text))


def rounds_to(value: float, stated: str) -> bool:
    """Whether ``value`` shown with as many decimals as ``stated`` has reads ``stated``."""
    decimals = len(stated.partition(".")[2])
    return f"{value:.{decimals}f}" == stated.replace(",", "")


def load(link: str) -> dict:
    return json.loads((ROOT / "docs" / link).read_text(encoding="utf-8"))


def table_cells() -> list[tuple[str, str, str, str, str]]:
    """(row label, header, cell, report link, system) for every checked cell of docs/performance.md.

    A row's report is the one it links, else the previous row's (an empty first cell continues a run),
    else the one report the text between the previous heading or table and this table links.
    """
    cells, header, link, above = [], None, None, set()
    for line in PERFORMANCE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            if header is not None or line.startswith("#"):
                above = set()
            above |= set(REPORT_LINK.findall(line))
            header, link = None, None
            continue
        row = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header, table_report = row, (next(iter(above)) if len(above) == 1 else None)
            continue
        if set("".join(row)) <= set("-: "):
            continue
        found = REPORT_LINK.search(line)
        if found:
            link = found.group(1)
        elif row[0]:  # a new run without a report of its own ends the previous report's rows
            link = table_report
        if link is None:
            continue
        named = dict(zip(header, row))
        system_name = plain(named.get("system", "dsft")).split()[0]
        if system_name in NO_REPORT:
            continue
        system_name = SYSTEM_NAMES.get(system_name, system_name)
        cells += [(plain(row[0]) or system_name, column, cell, link, system_name)
                  for column, cell in named.items() if column in COLUMNS]
    return cells


CELLS = table_cells()


def compare(stated: list[str], expected: list[Figure], where: str) -> None:
    assert stated, f"{where}: no figure"
    assert len(stated) <= len(expected), f"{where}: {len(stated)} figures, the report gives {len(expected)}"
    for text, (key, value) in zip(stated, expected):
        assert rounds_to(value, text), f"{where}: the doc says {text}, the report's {key} is {value:.4f}"


def test_the_tables_link_reports_and_state_figures():
    """Guards the parser: losing a table or a column would otherwise pass silently."""
    links = {link for *_, link, _ in CELLS}
    assert len(links) >= 8, links
    assert {header for _, header, *_ in CELLS} >= {"supervised tok/s", "peak memory", "MFU", "dsft / system",
                                                   "memory dsft / trl-expert", "dsft / TRL-expert per CPU-s"}


@pytest.mark.parametrize(("label", "header", "cell", "link", "system_name"), CELLS,
                         ids=[f"{link.rpartition('/')[2]}:{label[:30]}:{header}" for label, header, _, link, _ in CELLS])
def test_table_figure_equals_its_report(label, header, cell, link, system_name):
    stated = numbers(cell)
    if not stated and plain(cell) == "-" and system_name == "dsft":
        return  # dsft against itself
    compare(stated, COLUMNS[header](load(link), system_name), f"{link}, row {label!r}, column {header!r}")


@pytest.mark.parametrize(("doc", "phrase", "link", "figures"), FIGURES,
                         ids=[f"{doc.name}:{phrase[:40]}" for doc, phrase, *_ in FIGURES])
def test_prose_figure_equals_its_report(doc, phrase, link, figures):
    assert phrase in doc.read_text(encoding="utf-8"), f"{doc.name} no longer says {phrase!r}: update FIGURES"
    expected = figures(load(link), "dsft")
    stated = numbers(phrase)
    assert len(stated) == len(expected), f"{phrase!r} states {len(stated)} figures, FIGURES maps {len(expected)}"
    compare(stated, expected, f"{doc.name}: {phrase!r} ({link})")
