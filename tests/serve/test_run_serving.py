"""Serving a LoRA run directory (base + the run's adapter under the served name) and int8 CPU serving."""

from __future__ import annotations

from pathlib import Path

from live_server import run_live

MESSAGES = [{"role": "user", "content": "Summarise LoRA."}]


def adapter_reference(lora_run_dir: Path, serve_model_dir: Path, max_new_tokens: int) -> str:
    """Greedy text of base + the run's adapter, loaded with peft directly."""
    import torch
    from peft import PeftModel

    from dsft.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(lora_run_dir / "final")
    model = PeftModel.from_pretrained(load_model(serve_model_dir, dtype="float32", device="cpu"),
                                      str(lora_run_dir / "final")).eval()
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    ids = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.eos_token_id)[0, len(prompt):]
    return tokenizer.decode(ids, skip_special_tokens=True)


def test_lora_run_is_served_with_its_adapter(lora_run_dir: Path, serve_model_dir: Path) -> None:
    from dsft.serve.server import build_engine
    from dsft.serve.settings import ServeSettings

    settings = ServeSettings(served_model_name="run")
    with run_live(build_engine(str(lora_run_dir), [], settings), settings) as server:
        client = server.client()
        answer = client.chat.completions.create(model="run", messages=MESSAGES, max_tokens=8, temperature=0)
        listed = [m.id for m in client.models.list().data]
    reasoning = (answer.choices[0].message.model_extra or {}).get("reasoning_content") or ""
    content = answer.choices[0].message.content
    assert reasoning + ("</think>" + content if content is not None else "") == \
        adapter_reference(lora_run_dir, serve_model_dir, 8)
    assert listed == ["run"], "the run's own adapter is what the served name means, not a separate model"


def test_int8_serving_merges_the_run_adapter_and_quantizes(lora_run_dir: Path) -> None:
    from dsft.export.quantize import count_quantized_linears
    from dsft.serve.serving_model import load_serving_model

    serving = load_serving_model(str(lora_run_dir), quantize="int8")
    # 2 layers x (q, k, v, o, gate, up, down); lm_head stays float.
    assert count_quantized_linears(serving.model) == 14
    assert serving.adapters == {} and serving.default_adapter is None
    assert not any("lora" in name for name, _ in serving.model.named_modules())
