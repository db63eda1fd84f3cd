"""Each tiny preset is an ordinary HF checkpoint that loads through the same code as a real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsft.errors import DsftError
from dsft.models.loading import align_special_tokens, load_model, load_tokenizer, model_family_info
from dsft.models.resolve import resolve_model
from dsft.models.tiny import TINY_PRESETS, write_tiny

CHECKPOINT_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                    "generation_config.json"}

# Special-token ids as documented in docs/models.md (and, for R1 and the distill, as released).
EXPECTED_IDS = {
    "tiny-deepseek-v3": {"<｜begin▁of▁sentence｜>": 0, "<｜end▁of▁sentence｜>": 1, "<｜User｜>": 128803,
                         "<｜Assistant｜>": 128804, "<think>": 128798, "</think>": 128799},
    "tiny-r1-distill-qwen": {"<｜begin▁of▁sentence｜>": 151646, "<｜end▁of▁sentence｜>": 151643,
                             "<｜User｜>": 151644, "<｜Assistant｜>": 151645, "<think>": 151648,
                             "</think>": 151649},
    "tiny-deepseek-llm": {"<｜begin▁of▁sentence｜>": 100000, "<｜end▁of▁sentence｜>": 100001},
}
ARCHITECTURES = {"tiny-deepseek-v3": "DeepseekV3ForCausalLM", "tiny-r1-distill-qwen": "Qwen2ForCausalLM",
                 "tiny-deepseek-llm": "LlamaForCausalLM"}
VOCAB = {"tiny-deepseek-v3": 129280, "tiny-r1-distill-qwen": 151936, "tiny-deepseek-llm": 102400}


@pytest.mark.parametrize("name", sorted(TINY_PRESETS))
def test_preset_loads_like_a_real_checkpoint(name: str, tiny_model_dir) -> None:
    path = tiny_model_dir(name)
    assert CHECKPOINT_FILES <= {p.name for p in path.iterdir()}
    # A directory goes through the same resolution as any user-supplied checkpoint.
    assert resolve_model(str(path)) == path
    info = model_family_info(path)
    assert info.architecture == ARCHITECTURES[name]

    tokenizer = load_tokenizer(path)
    model = load_model(path)
    assert type(model).__name__ == ARCHITECTURES[name]
    assert model.dtype == torch.float32  # auto dtype on CPU
    assert model.config.vocab_size == VOCAB[name]
    assert sum(p.numel() for p in model.parameters()) < 40_000_000

    for token, token_id in EXPECTED_IDS[name].items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
    ids = tokenizer("Hello 你好 123")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id  # add_bos_token, as released
    assert tokenizer.pad_token_id is not None

    align_special_tokens(model, tokenizer)
    batch = torch.tensor([ids])
    out = model(input_ids=batch, labels=batch)
    assert out.logits.shape == (1, len(ids), VOCAB[name])
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("name", sorted(TINY_PRESETS))
def test_chat_template_renders_the_family_prompt(name: str, tiny_model_dir) -> None:
    tokenizer = load_tokenizer(tiny_model_dir(name))
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "<think>\nGreeting.\n</think>\n\nHello!"},
                {"role": "user", "content": "What is 2+2?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos, eos = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
    if name == "tiny-deepseek-llm":
        # The deepseek-llm template keeps assistant content verbatim.
        expected = (f"{bos}You are a helpful assistant.\n\nUser: Hi\n\nAssistant: <think>\nGreeting.\n</think>\n\n"
                    f"Hello!{eos}User: What is 2+2?\n\nAssistant:")
    else:
        expected = (f"{bos}You are a helpful assistant.<｜User｜>Hi<｜Assistant｜>\n\nHello!{eos}"
                    "<｜User｜>What is 2+2?<｜Assistant｜><think>\n")
    assert text == expected


def test_qwen_distill_bos_trap_is_fixed(tiny_model_dir) -> None:
    path = tiny_model_dir("tiny-r1-distill-qwen")
    assert json.loads((path / "config.json").read_text())["bos_token_id"] == 151643  # as released
    model, tokenizer = load_model(path), load_tokenizer(path)
    changed = align_special_tokens(model, tokenizer)
    assert "config.bos_token_id: 151643 -> 151646" in changed
    assert model.config.bos_token_id == tokenizer.bos_token_id == 151646


def test_write_is_seeded(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    a = load_file(write_tiny("tiny-deepseek-llm", tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(write_tiny("tiny-deepseek-llm", tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(write_tiny("tiny-deepseek-llm", tmp_path / "c", seed=4) / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


def test_write_refuses_unknown_and_non_empty(tmp_path: Path) -> None:
    with pytest.raises(DsftError, match="tiny-deepseek-v3"):
        write_tiny("tiny-nope", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DsftError, match="not empty"):
        write_tiny("tiny-deepseek-llm", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_deepseek_llm_stand_in_is_a_consistent_bpe() -> None:
    from dsft.models.tokenizers import LLM_REGULAR_TOKENS, deepseek_llm_tokenizer_files

    tokenizer_json, _ = deepseek_llm_tokenizer_files()
    vocab = tokenizer_json["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(LLM_REGULAR_TOKENS))
    for merge in tokenizer_json["model"]["merges"]:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        assert left in vocab and right in vocab and left + right in vocab, merge


def test_r1_think_tokens_are_not_special(tiny_model_dir) -> None:
    # As in R1: <think> survives skip_special_tokens, so a decoded completion keeps its reasoning markers.
    tokenizer = load_tokenizer(tiny_model_dir("tiny-deepseek-v3"))
    ids = tokenizer("<think>\nx\n</think>\n\ny", add_special_tokens=False)["input_ids"]
    assert ids[0] == 128798
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>\n\ny"


@pytest.mark.parametrize("name", sorted(TINY_PRESETS))
def test_a_fresh_preset_tokenizer_loads_without_transformers_class_warning(name: str, tiny_model_dir) -> None:
    """Every load of tiny-deepseek-v3 / -llm printed "`tokenizer_class` is `LlamaTokenizerFast` but
    `tokenizer.json` is ByteLevel; loading `TokenizersBackend`..." (AutoTokenizer, as `dsft template render
    --tokenizer` loads it): the files now name the class transformers loads, so the ids are the same."""
    import logging

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    hf_logger = hf_logging.get_logger("transformers")
    hf_logger.addHandler(handler)
    hf_logging.warning_once.cache_clear()  # an earlier test's load would have used up the one warning
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir(name)))
    finally:
        hf_logger.removeHandler(handler)
    assert [r.getMessage() for r in records if "tokenizer_class" in r.getMessage()] == []
    expected_class = {"tiny-r1-distill-qwen": "Qwen2Tokenizer"}.get(name, "TokenizersBackend")
    assert type(tokenizer).__name__ == expected_class
    assert tokenizer("hi")["input_ids"][0] == EXPECTED_IDS[name]["<｜begin▁of▁sentence｜>"]  # BOS still added
