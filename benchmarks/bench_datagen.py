"""Time the data-generation steps on this machine: records per second, wall and CPU.

Not a test: run it by hand and quote the figures with the machine and its load.

    python benchmarks/bench_datagen.py [--records 200]

Steps: the embedding score (bundled multilingual-e5-small), IFD with the tiny R1-Distill-Qwen preset
(the figure says nothing about a 7B model: it measures dsft's own overhead), synonym augmentation
(zh + en), template filling, and distillation through a local endpoint that answers instantly (the
client's own cost: concurrency, cache, verification; a real teacher's latency dominates in practice).
Records are the shipped reservoir sample, repeated with a counter to reach ``--records``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def timed(name: str, count: int, function: Any) -> Any:
    load, wall, cpu = os.getloadavg()[0], time.perf_counter(), _cpu()
    result = function()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    print(f"{name}: {count} records, {wall:.2f} s wall ({count / wall:.1f} records/s), {cpu:.2f} s CPU "
          f"({count / max(cpu, 1e-9):.1f} records/CPU-s), load average {load:.1f}")
    return result


class _Instant(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        data = json.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": f"The answer is {len(question)}.", "reasoning_content": "Counted."}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()

    from dsft.config.schema import AugmentConfig, DistillConfig
    from dsft.data.augment import augment_records
    from dsft.data.conversation import Conversation
    from dsft.data.distill import distill_files
    from dsft.data.samples import sample_path
    from dsft.data.semantic import EmbeddingScorer
    from dsft.data.synonyms import load_thesaurus
    from dsft.data.table_templates import fill_rows
    from dsft.eval.answer_check import answer_checker
    from dsft.models.loading import load_model, load_tokenizer
    from dsft.models.resolve import resolve_model
    from dsft.templates import get_template
    from dsft.training.ifd import ifd_scores

    base = [json.loads(line) for line in sample_path("reservoirs").read_text(encoding="utf-8").splitlines()]
    rows = [base[i % len(base)] for i in range(args.records)]
    conversations = []
    for i, row in enumerate(rows):
        conversation = Conversation.from_dict(row)
        conversation.messages[0].content = f"({i}) {conversation.messages[0].content}"
        conversation.meta["origin"] = f"bench:{i + 1}"
        conversations.append(conversation)
    n = len(conversations)
    print(f"cpus: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")

    scorer = timed("embedding model load", 1, EmbeddingScorer)
    timed("semantic: embedding score (multilingual-e5-small)", n, lambda: scorer(conversations))

    path = resolve_model("tiny-r1-distill-qwen")
    tokenizer, model = load_tokenizer(path), load_model(path, "float32")
    template = get_template("deepseek-r1", tokenizer)
    timed("semantic: IFD (tiny-r1-distill-qwen)", n, lambda: ifd_scores(model, tokenizer, template, conversations))

    timed("synonym tables load (Cilin + WordNet)", 1, lambda: (load_thesaurus("zh"), load_thesaurus("en")))
    settings = AugmentConfig(synonym_copies=1)
    made = timed("augment: synonym copies (generate + near-copy check)", n,
                 lambda: augment_records(conversations, conversations, settings, 0, Path(tempfile.mkdtemp())))
    print(f"  added {dict(made.added)}, near copies dropped {len(made.removed)}")
    table = [{"name": f"水库{i}", "year": 1950 + i % 50} for i in range(n)]
    timed("augment: template filling (3 phrasings per row)", 3 * n, lambda: fill_rows(
        table, [f"t.csv row {i}" for i in range(n)], ["{name}哪年建成？", "{name}的建成年份？", "When was {name} built?"],
        "{year}年。"))

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Instant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as directory:
        questions = Path(directory) / "q.jsonl"
        questions.write_text("".join(json.dumps({"question": c.messages[0].content, "answer": "7"}, ensure_ascii=False)
                                     + "\n" for c in conversations), encoding="utf-8")
        cfg = DistillConfig.model_validate({"endpoint": {"base_url": f"http://127.0.0.1:{server.server_address[1]}/v1",
                                                         "model": "instant", "concurrency": 8}})
        timed("distill: instant local teacher, concurrency 8", n,
              lambda: distill_files(cfg, [str(questions)], Path(directory) / "out", answer_checker("auto")))
        timed("distill: rerun, every answer from the cache", n,
              lambda: distill_files(cfg, [str(questions)], Path(directory) / "out", answer_checker("auto")))
    server.shutdown()


if __name__ == "__main__":
    main()
