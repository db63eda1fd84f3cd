"""The converted SmolLM2 (GGUF Q4_1 -> dequantised float32 checkpoint) against llama.cpp on the original file,
and dsft's validation loss against an independent computation with plain transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsft.export.gguf_verify import gguf_logits, load_llama
from dsft.export.verify import compare_logits, hf_logits
from dsft.models.gguf_source import read_import_record, tokenization_mismatches

from factcheck import prompts_for
from jsonl_files import read_jsonl

ANSWER_TOKENS = 12


def test_import_records_the_source_and_its_quantisation(smollm2_dir: Path, smollm2_gguf: Path) -> None:
    record = read_import_record(smollm2_dir)
    assert record["source"] == "ollama:smollm2:135m" and Path(record["gguf_file"]).resolve() == smollm2_gguf
    assert (record["architecture"], record["quantization"], record["dequantized_to"]) == ("llama", "Q4_1", "float32")
    assert record["tensor_types"]["Q4_1"] > 200
    assert "{% for message in messages %}" in (smollm2_dir / "chat_template.jinja").read_text(encoding="utf-8")


def test_the_conversion_parses_the_gguf_once_not_four_times(smollm2_conversion, smollm2_gguf: Path) -> None:
    # dsft reads the header for its checks before converting (a refused file costs no conversion); transformers
    # then parsed the file again for the tokenizer's config lookup, the model's config and the weights, 4-5 s
    # of CPU each here. All four share one reader.
    _, parsed = smollm2_conversion
    assert len(parsed) == 1 and Path(parsed[0]).resolve() == smollm2_gguf


def test_the_tokenizer_check_agrees_with_llama_cpp_without_alarming_the_user(smollm2, smollm2_gguf, capfd) -> None:
    # llama.cpp warned "possible training context overflow" on every conversion (a vocabulary-only load has
    # no training context): misleading in a training tool, and it is not about training at all.
    assert tokenization_mismatches(smollm2_gguf, smollm2[1]) == []
    captured = capfd.readouterr()
    assert "n_ctx" not in captured.err + captured.out


@pytest.mark.slow
def test_models_import_of_an_ollama_name_says_only_what_matters(realmodel_env, tmp_path: Path) -> None:
    # `dsft models import` as a user runs it (a fresh process): the checkpoint, the dequantisation note, and no
    # warning from the libraries underneath (DeepSpeed's "Setting accelerator to CPU" on a CPU machine).
    out = tmp_path / "smollm2"
    done = subprocess.run([sys.executable, "-m", "dsft", "models", "import", "ollama:smollm2:135m", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_import_record(out)["source"] == "ollama:smollm2:135m" and (out / "model.safetensors").is_file()
    said = done.stdout + done.stderr
    assert "dequantised to float32" in said
    assert "accelerator" not in said and "n_ctx" not in said, said[-2000:]


def test_converted_model_answers_like_llama_cpp_on_the_original_gguf(smollm2, smollm2_gguf, facts) -> None:
    model, tokenizer = smollm2
    prompts = [tokenizer.encode(p, add_special_tokens=False)
               for p in prompts_for(read_jsonl(facts["general"]), tokenizer)]
    llm = load_llama(smollm2_gguf, n_ctx=256)
    try:
        comparison = compare_logits(hf_logits(model, prompts), gguf_logits(llm, prompts))
        same = 0
        for ids in prompts:
            ours = model.generate(torch.tensor([ids]), max_new_tokens=ANSWER_TOKENS, do_sample=False)[0, len(ids):]
            llm.reset()
            theirs = []
            for token in llm.generate(ids, temp=0.0, reset=True):
                if len(theirs) == ANSWER_TOKENS or token == tokenizer.eos_token_id:
                    break
                theirs.append(token)
            ours_list = [t for t in ours.tolist() if t != tokenizer.eos_token_id][:ANSWER_TOKENS]
            same += ours_list == theirs
    finally:
        llm.close()
    print(f"converted float32 vs llama.cpp on the Q4_1 file: {comparison.summary()}; "
          f"greedy answers ({ANSWER_TOKENS} tokens) identical for {same}/{len(prompts)} questions")
    # llama.cpp multiplies Q4_1 blocks with 8-bit-quantised activations, the converted model in float32: the
    # distributions agree (measured 97.8% top-1, mean KL 0.0055) and a near-tie may flip one greedy token
    # (measured: 5 of 6 answers identical over 12 tokens).
    assert comparison.top1_agreement >= 0.9 and comparison.mean_kl < 0.05
    assert same >= len(prompts) - 1


def test_step0_validation_loss_equals_plain_transformers(smollm2_dir, smollm2, facts, tmp_path, run_cli) -> None:
    """dsft's loss at step 0 vs a forward pass over the supervised tokens `dsft template render --json` reports."""
    from dsft.config import load_config
    from dsft.training.run import run_training

    cfg = load_config(None, [
        f"model.name_or_path={smollm2_dir}", f"data.train=[{facts['train']}]", f"data.val=[{facts['paraphrased']}]",
        "train.method=full", "train.max_steps=1", "train.micro_batch_size=4", "train.max_seq_len=128",
        "train.save_steps=1", "eval.steps=1", "train.report_to=[]",
        # The loss definition is under test, whatever the default lm_head dtype (a bf16 head moved this loss
        # by 1.1e-3: 1.657218 against 1.656152).
        "train.loss_dtype=fp32",
    ])
    result = run_training(cfg, tmp_path / "run", progress=False)
    step0 = result.first_eval_loss
    model, _ = smollm2
    total, count = 0.0, 0
    for i, record in enumerate(read_jsonl(facts["paraphrased"])):
        messages = tmp_path / f"m{i}.json"
        messages.write_text(json.dumps(record["messages"], ensure_ascii=False), encoding="utf-8")
        code, out, err = run_cli(["template", "render", "--template", "hf", "--tokenizer", str(smollm2_dir),
                                  "--messages", str(messages), "--mode", "train", "--json"])
        assert code == 0, err
        rendered = json.loads(out)
        labels = torch.tensor(rendered["labels"][1:])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([rendered["input_ids"]])).logits[0, :-1]
        total += float(torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
        count += int(labels.ne(-100).sum())
    print(f"step-0 validation loss: dsft {step0:.6f}, plain transformers {total / count:.6f} over {count} tokens")
    assert step0 == pytest.approx(total / count, abs=1e-4)


def test_the_tier_runs_its_torch_work_on_one_thread() -> None:
    """conftest.py: one intra-op thread in this process, OMP_NUM_THREADS=1 for the processes a test starts."""
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
