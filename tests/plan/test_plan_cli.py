"""`dsft plan` end to end: JSON fields, recommendation, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_json_output_has_the_documented_fields(run_cli) -> None:
    code, out, _ = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--method", "lora", "--gpu-mem", "24",
                            "--json"])
    assert code == 0
    payload = json.loads(out)
    for key in ("per_gpu_bytes", "breakdown", "host_ram_bytes", "checkpoint_bytes", "fits", "recommendation"):
        assert key in payload
    assert set(payload["breakdown"]) == {"weights", "lora_weights", "gradients", "optimizer_states", "activations",
                                         "logits_loss", "framework_overhead"}
    assert payload["per_gpu_bytes"] == max(payload["phase_peaks"].values())
    assert payload["fits"] is False
    assert payload["recommendation"]["changes"] == ["--grad-checkpointing"]
    assert payload["recommendation"]["per_gpu_bytes"] <= 24 * 1024**3


@pytest.mark.parametrize(("gpu_mem", "host_mem", "gib", "host_gib"), [
    ("24GB", "512g", 24.0, 512.0),  # memory is sold in powers of two: a "24 GB" RTX 3090 holds 24 GiB
    ("24GiB", "512GIB", 24.0, 512.0),
    ("24576mib", "1TB", 24.0, 1024.0),
    ("24000 MB", "2048", 23.4375, 2048.0),
])
def test_memory_flags_take_the_units_people_write(gpu_mem, host_mem, gib, host_gib, run_cli) -> None:
    """`dsft plan --gpu-mem 24GB` was refused: 'Invalid value for --gpu-mem: Input should be a valid number'.
    Then it was read as 24 x 10^9 bytes, 22.35 GiB: a 3090 owner's "24GB" planned for 1.6 GiB less than the card."""
    code, out, err = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", gpu_mem,
                              "--host-mem", host_mem, "--json"])
    assert code == 0, err
    payload = json.loads(out)
    assert payload["request"]["gpu_mem_gib"] == gib and payload["request"]["host_mem_gib"] == host_gib
    assert payload["gpu_mem_bytes"] == int(gib * 1024**3)


def test_config_json_path_and_sequence_parallel(tmp_path, run_cli, tiny_model_dir) -> None:
    config = tiny_model_dir("tiny-deepseek-v3") / "config.json"
    sizes = []
    for sp in (1, 2):
        code, out, _ = run_cli(["plan", "--model", str(config), "--method", "full", "--gpus-per-node", "2",
                                "--zero", "3", "--seq-len", "4096", "--sp", str(sp), "--json"])
        assert code == 0
        # DeepSpeed, imported earlier in this test process (with its log handler bound to stdout), logs
        # an accelerator warning on first use; a fresh `dsft plan --json` process keeps stdout clean.
        sizes.append(json.loads(out[out.index("{\n"):])["breakdown"]["activations"])
    # Ulysses: each rank holds seq/sp tokens of activations; MLA's values padded to the query/key width around
    # its all-to-all keep nope + 2 rope - v more elements per token and head in each layer (bf16)
    c = json.loads(config.read_text())
    padding = c["num_hidden_layers"] * 2048 * c["num_attention_heads"] * 2 * (
        c["qk_nope_head_dim"] + 2 * c["qk_rope_head_dim"] - c["v_head_dim"])
    assert sizes[1] * 2 == sizes[0] + 2 * padding


def test_user_errors_exit_2_without_traceback(run_cli) -> None:
    results = [run_cli(["plan", "--model", "no-such-model"]),
               run_cli(["plan", "--model", "deepseek-v3", "--zero", "0", "--offload", "optimizer"]),
               run_cli(["plan", "--model", "deepseek-v3", "--gpus-per-node", "8", "--sp", "3"])]
    assert [code for code, _, _ in results] == [2, 2, 2]
    err = "".join(err for _, _, err in results)
    assert "Traceback" not in err and "--sp 3" in err


def test_the_loss_chunk_sized_is_the_one_training_uses(run_cli, tmp_path) -> None:
    """The planner sized a 1,024-row loss chunk while `train.loss_chunk_size: auto` trains with 256 rows on a GPU
    (0.7 GiB of phantom logits for a 152k vocabulary); a config's own chunk size is sized as given."""
    from dsft.plan.memory import PlanRequest
    from dsft.training.loss import GPU_CHUNK_ROWS

    assert PlanRequest().loss_chunk == GPU_CHUNK_ROWS
    code, out, _ = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--method", "lora", "--json"])
    assert code == 0
    payload = json.loads(out)
    assert payload["request"]["loss_chunk"] == GPU_CHUNK_ROWS
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"model": {"name_or_path": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"},
                                  "train": {"loss_chunk_size": 512}}))
    code, out, _ = run_cli(["plan", "--config", str(config), "--json"])
    assert code == 0
    chunked = json.loads(out)
    assert chunked["request"]["loss_chunk"] == 512
    vocab, width = 152_064, 2 + 4  # the logits chunk in bf16 and in fp32
    assert chunked["breakdown"]["logits_loss"] - payload["breakdown"]["logits_loss"] == (512 - GPU_CHUNK_ROWS) * vocab * width


def test_sequence_parallelism_is_recommended_for_an_mla_model(run_cli) -> None:
    """Guide 003's 671B full fine-tune at 32K tokens: sequence parallelism is among the moves (dsft trains MLA
    under DeepSpeed-Ulysses, its values padded to the query/key width), and every move is one `dsft train` takes."""
    code, out, _ = run_cli(["plan", "--model", "deepseek-v3", "--method", "full", "--nodes", "32", "--gpus-per-node",
                            "8", "--gpu-mem", "80", "--seq-len", "32768", "--zero", "3", "--offload", "optimizer+param",
                            "--micro-batch", "2", "--grad-checkpointing", "--json"])
    assert code == 0
    payload = json.loads(out[out.index("{\n"):])
    assert payload["fits"] is False
    recommended = payload["recommendation"]
    assert recommended is not None and any(change.startswith("--sp") for change in recommended["changes"]), recommended


def test_a_model_the_planner_cannot_size_is_refused_naming_what_it_takes(run_cli) -> None:
    """'deepseek-32b' was refused as 'not a preset, tiny preset or path to a config.json' while --help said hub ids
    work; the planner sizes a hub id only by its last part (a preset) and downloads nothing."""
    code, _, err = run_cli(["plan", "--model", "deepseek-32b"])
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err
    assert ("--model deepseek-32b: not a preset, a tiny preset, a model directory, a config.json path or a hub id "
            "whose last part is a preset") in text
    assert "`dsft models list` shows the presets" in text and "r1-distill-qwen-32b" in text
    code, _, err = run_cli(["plan", "--model", "Qwen/Qwen2-7B"])
    text = " ".join(err.split())
    assert code == 2
    assert ("--model Qwen/Qwen2-7B: a hub id whose last part, 'qwen2-7b', is no preset (the planner downloads "
            "nothing); pass the model's config.json or a directory holding it") in text
    code, out, _ = run_cli(["plan", "--help"])
    assert "whose last part is a preset" in " ".join(out.replace("│", " ").split())


@pytest.mark.parametrize("name", ["./my-model", "{tmp}/my-model", "runs/my-modle"])
def test_a_missing_model_path_is_not_called_a_hub_id(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch,
                                                      name: str) -> None:
    """A local path that does not exist (./my-model, an absolute one, runs/my-modle beside a runs/ directory) was
    refused as 'a hub id whose last part, 'my-model', is no preset', which it is not (model loading reads it as the
    path it is); it is named as a missing model directory or config.json."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    model = name.format(tmp=tmp_path)
    code, _, err = run_cli(["plan", "--model", model])
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"--model {model}: no such model directory or config.json" in text and "hub id whose" not in text, text


BROKEN_CONFIGS = [
    ("invalid-json", b"{bad", "config.json: invalid JSON at line 1 column 2: Expecting property name"),
    ("a-list", b"[]", "config.json: a JSON list, not the object of a model's config"),
    ("utf-16", "{}".encode("utf-16"), "config.json: not UTF-8 text (invalid start byte at byte 0)"),
]


@pytest.mark.parametrize("command", [["plan", "--model"], ["models", "targets"]])
@pytest.mark.parametrize("content, expected", [c[1:] for c in BROKEN_CONFIGS], ids=[c[0] for c in BROKEN_CONFIGS])
def test_a_model_directory_whose_config_json_is_broken_is_named(tmp_path: Path, run_cli, command: list[str],
                                                                content: bytes, expected: str) -> None:
    """dsft plan printed the JSONDecodeError's traceback; dsft models targets imported torch and transformers and said
    'its architecture has no native transformers class (remote code)'."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_bytes(content)
    code, out, err = run_cli([*command, str(tmp_path / "m")])
    assert code == 2 and "Traceback" not in err, (out, err)
    assert " ".join(err.split()).startswith(f"error: {tmp_path / 'm'}/{expected}"), err


@pytest.mark.parametrize("name", ["./x/deepseek-v3", "{tmp}/x/deepseek-v3", "~/no-such-dir-dsft/deepseek-v3",
                                  "runs/deepseek-v3", "a/b/deepseek-v3", "./x/tiny-qwen2"])
def test_a_missing_path_ending_in_a_preset_name_is_no_preset(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch,
                                                              name: str) -> None:
    """./x/deepseek-v3 (a path that names nothing, whose last part is a preset) was planned as the deepseek-v3
    preset, silently: a path is read as the path it is, as model loading reads it, and refused when it is missing.
    The preset name itself, and a hub id ending in one, still plan the preset."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    model = name.format(tmp=tmp_path)
    code, out, err = run_cli(["plan", "--model", model, "--json"])
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and not out, (out, err)
    assert f"--model {model}: no such model directory or config.json" in text, text
    for preset in ("deepseek-v3", "deepseek-ai/DeepSeek-V3"):
        code, out, err = run_cli(["plan", "--model", preset, "--json"])
        assert code == 0, err
        assert json.loads(out[out.index("{\n"):])["model"] == "deepseek-v3"


@pytest.mark.parametrize("model, said", [
    ("deepseek-32b", "not a preset, a tiny preset, a model directory"),
    ("Qwen/Qwen2-7B", "a hub id whose last part, 'qwen2-7b', is no preset"),
    ("./my-model", "no such model directory or config.json"),
    ("missing.json", "no config.json at missing.json"),
    ("deepseek-r1:32b", "an Ollama model, which the planner does not read"),
    ("weights.gguf/deepseek-v3", "weights.gguf is a file, not a directory"),
])
def test_a_model_from_the_config_is_named_by_its_file_and_key(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch,
                                                              model: str, said: str) -> None:
    """`dsft plan --config c.yaml` refused the config's model.name_or_path as '--model deepseek-32b: ...', a flag
    the user never gave; the error names the file and the key the value came from. A --model given beside the
    config is still named as the flag."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.gguf").write_bytes(b"GGUF")
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"model": {"name_or_path": model}}))
    code, out, err = run_cli(["plan", "--config", str(config), "--json"])
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and not out, (out, err)
    assert f"{config}: model.name_or_path {model}: " in text and said in text, text
    assert "--model" not in text, text
    code, _, err = run_cli(["plan", "--config", str(config), "--model", model])
    assert code == 2 and f"--model {model}: " in " ".join(err.split()), err


def test_a_plan_whose_gpus_fit_but_host_ram_does_not_says_so(run_cli) -> None:
    """Guide 003's 16-node row (`--host-mem 2TiB`): the GPU peak fit, host RAM did not, and the verdict said
    'does not fit in 80 GiB per GPU', sending the user to shrink what already fit. The verdict names host RAM."""
    code, out, err = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", "80", "--host-mem", "1"])
    assert code == 0, err
    text = " ".join(out.split())
    assert "does not fit in 1 GiB of host RAM per node" in text
    assert "does not fit in 80 GiB per GPU" not in text
    code, out, err = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", "80", "--host-mem", "64"])
    assert code == 0 and "fits in 80 GiB per GPU and 64 GiB of host RAM per node" in " ".join(out.split())


def test_sequence_parallel_with_rows_two_to_a_micro_batch_is_told_how_dsft_trains_it(run_cli) -> None:
    """Guide 003's recommended row (SP 4, bs 2) planned as fitting with no word that `dsft train` refuses packed rows
    two to a micro-batch under SP; the plan now says how that row trains."""
    code, out, err = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--sp", "4", "--gpus-per-node", "4",
                              "--micro-batch", "2", "--seq-len", "8192", "--json"])
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert any("--sp 4 with --micro-batch 2" in n and "train.packing: false" in n for n in notes), notes
    code, out, err = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--sp", "4", "--gpus-per-node", "4",
                              "--micro-batch", "1", "--seq-len", "8192", "--json"])
    assert code == 0 and not any("--micro-batch" in n for n in json.loads(out)["notes"])
