import json
import re
from pathlib import Path

import pytest
import yaml

from dsft.config import DsftConfig, dump_config, load_config
from dsft.config.loader import parse_override
from dsft.data.input_checks import input_problems
from dsft.errors import ConfigError


def test_defaults_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(DsftConfig()))
    assert load_config(path) == DsftConfig()


def test_overrides_are_typed() -> None:
    cfg = load_config(None, ["train.lr=1e-4", "lora.r=8", "data.train=[a.jsonl, b.jsonl]", "train.packing=false"])
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.lora.r == 8
    assert cfg.data.train == ["a.jsonl", "b.jsonl"]
    assert cfg.train.packing is False


def test_lora_targets_given_as_comma_separated_names_are_a_list(tmp_path: Path) -> None:
    """`--set lora.targets=q_proj,v_proj` (as --grid writes values) was one module name, 'q_proj,v_proj', refused
    only once the model had loaded; a module name never holds a comma."""
    assert load_config(None, ["lora.targets=q_proj,v_proj"]).lora.targets == ["q_proj", "v_proj"]
    assert load_config(None, ["lora.targets=q_proj, v_proj,"]).lora.targets == ["q_proj", "v_proj"]
    assert load_config(None, ["lora.targets=q_proj"]).lora.targets == "q_proj"
    assert load_config(None, ["lora.targets=[q_proj, v_proj]"]).lora.targets == ["q_proj", "v_proj"]
    assert load_config(None).lora.targets == "all-linear"


def test_a_learning_rate_above_1_is_refused_by_key_before_anything_loads() -> None:
    """`train.lr=3e5` (3e-5 with its minus lost) loaded the model and stopped at step 2 on a NaN loss."""
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.lr=3e5"])
    assert info.value.problems == ["train.lr: must be at most 1, got 300000 (AdamW and Adafactor diverge at the "
                                   "first step far below that; did you mean 3e-5?)"]
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.lr=1e39"])  # beyond float32's range too: torch's Adam failed inside its step
    assert "train.lr: must be at most 1, got 1e+39 (AdamW" in str(info.value)
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("override, problem", [
    ("train.max_steps=-5", "train.max_steps: must be -1 (use epochs) or > 0, got -5"),
    ("train.lr=2", "train.lr: must be at most 1, got 2 (AdamW and Adafactor diverge at the first step far below that)"),
    # The dashboard's form showed "train.lr: not enough values to unpack (expected 2, got 1)" for inf.
    ("train.lr=inf", "train.lr: Input should be a finite number, got 'inf'"),
])
def test_a_value_the_rule_already_quotes_is_not_quoted_again(override: str, problem: str) -> None:
    """The dashboard's form showed 'train.max_steps: must be -1 (use epochs) or > 0, got -5, got -5'."""
    with pytest.raises(ConfigError) as refused:
        load_config(None, [override])
    assert refused.value.problems == [problem]


@pytest.mark.parametrize("override, problem", [
    # transformers' set_seed failed on them once the model had loaded (numpy takes 0 to 2**32 - 1).
    ("train.seed=-1", "train.seed: Input should be greater than or equal to 0, got -1"),
    (f"train.seed={2**32}", "train.seed: Input should be less than or equal to 4294967295, got 4294967296"),
    # A run that never ended, its learning rate about 1e-21 (warmup: train.warmup_ratio of the steps).
    (f"train.max_steps={2**63}", "train.max_steps: must be at most 1,000,000,000 (32 years at a step a second"),
    ("train.epochs=1e11", "train.epochs: Input should be less than or equal to 1000000000, got 100000000000.0"),
    # Drew synonym rewrites for ever once a question's were used up.
    (f"data.augment.synonym_copies={10**12}",
     "data.augment.synonym_copies: must be at most 1,000 copies of each train question (1 to 10 is usual), got 10"),
    # Queued one endpoint request per copy in memory before asking.
    (f"data.augment.paraphrase_copies={10**12}", "data.augment.paraphrase_copies: must be at most 1,000 copies"),
])
def test_a_size_no_run_can_take_is_refused_by_key(override: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(None, [override])
    assert len(refused.value.problems) == 1 and refused.value.problems[0].startswith(problem), refused.value.problems


def test_the_largest_sizes_a_run_can_take_are_accepted() -> None:
    t = load_config(None, ["train.seed=0", f"train.max_steps={10**9}", f"train.epochs={10**9}"]).train
    assert (t.seed, t.max_steps, t.epochs) == (0, 10**9, 10**9)
    assert load_config(None, [f"train.seed={2**32 - 1}"]).train.seed == 2**32 - 1
    assert load_config(None, ["data.augment.synonym_copies=1000"]).data.augment.synonym_copies == 1000


@pytest.mark.parametrize("override", ["train.weight_decay=inf", "preference.beta=.inf", "grpo.beta=1e999",
                                      "train.max_grad_norm=.nan", "eval.temperature=-.inf"])
def test_a_float_key_is_a_finite_number(override: str) -> None:
    """train.weight_decay, preference.beta and grpo.beta (bounded below only) took inf, and the run trained on it."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as refused:
        load_config(None, [override])
    assert [p.split(", got")[0] for p in refused.value.problems] == [f"{key}: Input should be a finite number"]


def test_every_problem_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": -1, "bogus": 1}, "lora": {"r": "x"}, "nosuch": {}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "train.lr: Input should be greater than 0, got -1" in text
    assert "train.bogus: unknown key" in text
    assert "lora.r:" in text
    assert "nosuch: unknown key" in text
    assert len(info.value.problems) == 4


def test_a_misspelt_key_names_the_nearest_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.methd=lora", "lora.rank=8", "trian.lr=1", "data.mix=[{path: a.jsonl, ratoi: 0.2}]",
                           "train.zzz=1"])
    problems = info.value.problems
    assert "train.methd: unknown key; did you mean 'method'?" in problems
    assert "trian: unknown key; did you mean 'train'?" in problems
    assert "data.mix.0.ratoi: unknown key; did you mean 'ratio'?" in problems
    assert "train.zzz: unknown key" in problems  # nothing close: no guess
    assert any(p.startswith("lora.rank: unknown key") for p in problems)


def test_a_key_spelt_unlike_any_dsft_key_gets_no_unrelated_guess() -> None:
    """A tracker's ``project`` was answered 'did you mean objective?' and TrainingArguments' ``hub_revision`` 'did you
    mean precision?' (difflib's 0.6 cutoff): keys that do something else. A key another tool has now names what
    does its job in dsft, and a key close to nothing gets no guess; real misspellings keep theirs."""
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.project=demo", "train.hub_revision=main", "train.objectve=sft", "train.sede=1",
                           "lora.alhpa=16", "train.warmup=0.1"])
    problems = info.value.problems
    assert ("train.project: unknown key; dsft has no key for it: a tracker's project is its environment variable "
            "(WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME, SWANLAB_PROJECT) for the trackers train.report_to names") in problems
    assert ("train.hub_revision: unknown key; dsft has no key for it: dsft does not push to the Hub (the branch "
            "TrainingArguments pushes to); model.revision is the revision of the model loaded") in problems
    assert "train.objectve: unknown key; did you mean 'objective'?" in problems
    assert "lora.alhpa: unknown key; did you mean 'alpha'?" in problems
    assert "train.sede: unknown key; did you mean 'seed'?" in problems  # a swap: kept though difflib's 0.8 drops it
    assert "train.warmup: unknown key; did you mean 'warmup_ratio'?" in problems  # the key's start
    assert not any("did you mean" in p for p in problems if p.startswith(("train.project", "train.hub_revision")))
    with pytest.raises(ConfigError) as info:  # a key of no other tool, spelt unlike the section's: no guess
        load_config(None, ["train.projection=1", "data.colums={a: b}"])
    assert info.value.problems == ["data.colums: unknown key; did you mean 'columns'?",
                                   "train.projection: unknown key"]


@pytest.mark.parametrize(("value", "hint"), [("r1", "deepseek-r1"), ("deepseek_r1", "deepseek-r1"),
                                           ("DeepSeek-V3.2", "deepseek-v3.2")])
def test_a_template_name_written_another_way_names_the_family(value: str, hint: str) -> None:
    """template.name r1 (or vLLM's parser name deepseek_r1) listed the eight choices without saying which was meant."""
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"template.name={value}"])
    assert any(p.startswith("template.name: ") and p.endswith(f"got {value!r}; did you mean {hint!r}?")
               for p in info.value.problems), info.value.problems


def test_a_key_in_the_wrong_section_names_the_section_that_has_it() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["lr=1e-4", "lora.lr=1e-4", "train.r=8", "format=context_qa"])
    problems = info.value.problems
    assert "lr: unknown key; did you mean 'train.lr'?" in problems  # was: did you mean 'lora'?
    assert "lora.lr: unknown key; did you mean 'train.lr'?" in problems  # was: did you mean 'r'?
    assert "train.r: unknown key; did you mean 'lora.r'?" in problems
    assert "format: unknown key; did you mean 'data.format' or 'export.format'?" in problems


def test_a_guide_word_for_a_key_is_not_sent_to_a_key_that_does_something_else() -> None:
    """Guide 001's table says batch size and LoRA rank: train.batch_size was answered 'did you mean
    eval.batch_size?' (the evaluation's batch: set, it left the training batch as it was, without an error),
    train.steps 'did you mean eval.steps?' (the evaluation cadence), and lora.rank, model.path, data.path had no
    hint at all."""
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.batch_size=16", "train.steps=100", "lora.rank=32", "model.path=m", "data.path=d.json",
                           "eval.batch_size=8", "train.early_stopping_patience=3"])
    problems = info.value.problems
    assert ("train.batch_size: unknown key; use train.micro_batch_size (rows per device per forward; an optimizer "
            "step takes micro_batch_size x grad_accum x devices)") in problems
    assert "train.steps: unknown key; use train.max_steps" in problems
    assert "lora.rank: unknown key; use lora.r" in problems
    assert "model.path: unknown key; use model.name_or_path" in problems
    assert "data.path: unknown key; use data.train" in problems
    # A key that is the other section's indeed still says so.
    assert "train.early_stopping_patience: unknown key; did you mean 'eval.early_stopping_patience'?" in problems
    assert len(problems) == 6


def test_guide_001_training_arguments_are_translated_key_by_key(tmp_path: Path) -> None:
    """Guide 001's config dict (transformers TrainingArguments names under training_args/data_args) as YAML."""
    path = tmp_path / "guide.yaml"
    path.write_text(yaml.safe_dump({
        "model_name": "DeepSeek-13B",
        "training_args": {"output_dir": "./output", "num_train_epochs": 3, "per_device_train_batch_size": 8,
                          "gradient_accumulation_steps": 4, "learning_rate": 2e-5, "save_steps": 500, "fp16": True},
        "data_args": {"dataset_path": "./data/train.json", "test_size": 0.1, "max_seq_length": 512},
        "train": {"warmup_steps": 500}}, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert "model_name: unknown key; use model.name_or_path" in problems
    assert "train.warmup_steps: unknown key; use train.warmup_ratio (a share of the steps, not a count)" in problems
    (training,) = [p for p in problems if p.startswith("training_args:")]
    for pair in ("num_train_epochs -> train.epochs", "per_device_train_batch_size -> train.micro_batch_size",
                 "gradient_accumulation_steps -> train.grad_accum", "learning_rate -> train.lr",
                 "save_steps -> train.save_steps", "output_dir -> the --out option of dsft train"):
        assert pair in training
    (data,) = [p for p in problems if p.startswith("data_args:")]
    assert "test_size -> data.val_ratio" in data and "max_seq_length -> train.max_seq_len" in data  # not test_ratio


def test_guide_000_script_arguments_dsft_has_no_key_for_say_why(tmp_path: Path) -> None:
    """Guide 000's LoraConfig(bias="none", task_type="CAUSAL_LM"), TrainingArguments(tf32=True), from_pretrained's
    device_map and the tokenizer's added <|user|>/<|assistant|> tokens, written into a config, were 'unknown key'
    with nothing more: no word whether dsft does it, or why not."""
    path = tmp_path / "guide.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"name_or_path": "tiny-r1-distill-qwen", "device_map": "auto"},
        "train": {"tf32": True, "logging_dir": "./logs"}, "lora": {"bias": "none", "task_type": "CAUSAL_LM"},
        "tokenizer": {"additional_special_tokens": ["<|user|>", "<|assistant|>"]}}, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert sorted(info.value.problems) == [
        "lora.bias: unknown key; dsft has no key for it: dsft's adapters train no biases (peft's bias='none')",
        "lora.task_type: unknown key; dsft has no key for it: dsft's adapters are for causal LMs (peft's CAUSAL_LM)",
        "model.device_map: unknown key; dsft has no key for it: each process trains on its own device; "
        "train.distributed shards the model over several",
        "tokenizer: unknown section; its keys: additional_special_tokens -> (no dsft key: dsft renders with the "
        "model's own chat template (template.name) and adds no tokens, so no embedding is resized)",
        "train.logging_dir: unknown key; dsft has no key for it: TensorBoard events go to the run directory's tb/",
        "train.tf32: unknown key; dsft has no key for it: dsft does not turn TF32 on (PyTorch leaves it off for "
        "matmuls); train.precision: bf16 (auto's choice on Ampere and later) runs the matmuls in bf16"]


def test_guide_002_training_arguments_read_or_say_why(tmp_path: Path) -> None:
    """Guide 002's TrainingArguments written into the train section: report_to="none" was refused as 'Input should be
    a valid list, got 'none'' (TrainingArguments takes the word, and one tracker's name), and no_cuda,
    dataloader_pin_memory and remove_unused_columns were 'unknown key' with nothing more."""
    path = tmp_path / "guide.yaml"
    path.write_text("train:\n  report_to: none\n  no_cuda: false\n  dataloader_pin_memory: false\n"
                    "  remove_unused_columns: false\n  save_strategy: 'no'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert not [p for p in problems if p.startswith("train.report_to")], problems
    for key in ("no_cuda", "dataloader_pin_memory", "remove_unused_columns"):
        (problem,) = [p for p in problems if p.startswith(f"train.{key}:")]
        assert problem.startswith(f"train.{key}: unknown key; dsft has no key for it: "), problem
    assert "CUDA_VISIBLE_DEVICES=" in next(p for p in problems if p.startswith("train.no_cuda"))
    assert "train.save_total_limit: 1" in next(p for p in problems if p.startswith("train.save_strategy"))
    for written, read in (("none", []), ("None", []), ("tensorboard", ["tensorboard"]), ("[]", []),
                          ("[tensorboard, wandb]", ["tensorboard", "wandb"])):
        assert load_config(None, [f"train.report_to={written}"]).train.report_to == read, written
    with pytest.raises(ConfigError, match="report_to"):
        load_config(None, ["train.report_to=all"])  # no tracker of that name


def test_guide_002_first_1500_records_say_how(tmp_path: Path, run_cli) -> None:
    """Guide 002 trains on load_dataset("json", data_files=..., split="train[:1500]"). Written as data.split (or
    LLaMA-Factory's max_samples) it was 'unknown key' with nothing more, and the slice after the file name was 'the
    glob matches no .jsonl/.json/.csv/.parquet file', a glob the user never meant."""
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.split=train[:1500]", "data.max_samples=1500"])
    assert len(info.value.problems) == 2
    for problem in info.value.problems:
        assert "dsft has no key for it: dsft reads every record of data.train; to train on the first N" in problem
        assert "jq '.[:N]' in.json > first.json" in problem
    data = tmp_path / "medical_o1.json"
    data.write_text('[{"Question": "发烧怎么办？", "Complex_CoT": "感冒。", "Response": "喝水。"}]', encoding="utf-8")
    code, _, err = run_cli(["data", "prepare", f"{data}[:1500]", "--out", str(tmp_path / "out")])
    assert code == 2 and "Traceback" not in err, err
    assert f"{data}[:1500]: a datasets split slice (split='train[:1500]'), which names no file here; dsft reads" in err
    assert not (tmp_path / "out").exists()


def test_guide_001_regularisation_words_are_not_sent_to_a_key_spelt_alike() -> None:
    """Guide 001's 梯度裁剪 / early stopping / Shuffle-Buffer written as keys: train.grad_clip was answered 'did you
    mean grad_accum?' and train.gradient_clipping 'did you mean gradient_checkpointing?' (each a setting that does
    something else), and eval.patience, eval.min_delta and data.shuffle_buffer got no hint at all."""
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.grad_clip=1.0", "train.gradient_clipping=1.0", "eval.patience=3",
                           "eval.min_delta=0.001", "data.shuffle_buffer=10000", "train.dropout=0.1"])
    assert sorted(info.value.problems) == [
        "data.shuffle_buffer: unknown key; dsft has no key for it: dsft does not stream; the sampler draws a full "
        "permutation of the training set every epoch, which a shuffle buffer approximates",
        "eval.min_delta: unknown key; use eval.early_stopping_min_delta",
        "eval.patience: unknown key; use eval.early_stopping_patience",
        "train.dropout: unknown key; use model.attention_dropout (the model's attention) or lora.dropout (the "
        "adapter's input)",
        "train.grad_clip: unknown key; use train.max_grad_norm",
        "train.gradient_clipping: unknown key; use train.max_grad_norm"]
    with pytest.raises(ConfigError) as info:  # the cosine period as TrainingArguments writes it: was 'lr_scheduler?'
        load_config(None, ["train.lr_scheduler_kwargs={num_cycles: 5}"])
    assert info.value.problems == ["train.lr_scheduler_kwargs: unknown key; use train.lr_cycles (cosine_with_restarts' "
                                   "num_cycles, the scheduler's one argument dsft sets)"]


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_config(tmp_path)
    # A device or pipe is readable: /dev/null is an empty config (defaults), not "not found".
    assert load_config("/dev/null", ["data.train=[x.jsonl]"]).data.train == ["x.jsonl"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name_or_path: x\ntrain: [unclosed")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    # One line naming the place, lines counted from 1 as editors do (not PyYAML's "<unicode string>" dump).
    assert str(info.value) == (f"{bad}: not valid YAML at line 3, column 17: expected ',' or ']', but got "
                               "'<stream end>' (while parsing a flow sequence at line 3, column 8)")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)


@pytest.mark.parametrize("name, text, what", [
    # guide 004's data: YAML read it as a config whose data section was the list, and the problem quoted every record
    ("train.json", json.dumps({"data": [{"input": f"q{i}", "output": "a" * 50} for i in range(200)]}),
     '{"data": [...]} with 200 records'),
    ("train.jsonl", "".join(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n" for _ in range(3)),
     "JSON lines, one record a line"),  # was: not valid YAML at line 2, column 1: expected '<document start>'
    ("qa.json", json.dumps([{"Question": "q", "Response": "a"}] * 5), "a JSON array of 5 records"),
])
def test_a_data_file_given_as_the_config_is_named_as_data(tmp_path: Path, name: str, text: str, what: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}: data ({what}), not a config; give a YAML config that names it in data.train, "
                               f"e.g. dsft train examples/tiny-cpu.yaml --out RUN --set data.train={path}")


@pytest.mark.parametrize("config, asked", [
    ({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "bf16": {"enabled": True},
      "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                            "offload_param": {"device": "cpu", "pin_memory": True}}},
     "train.distributed: deepspeed, train.zero_stage: 3, train.offload: optimizer+param, train.precision: bf16"),
    ({"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "none"}}},
     "train.distributed: deepspeed, train.zero_stage: 2"),
])
def test_a_deepspeed_config_given_as_the_config_names_the_dsft_keys(tmp_path: Path, config: dict, asked: str) -> None:
    """Guide 000's ds_config.json given where the config goes ('dsft train ds_config.json') was six 'unknown key'
    problems, zero_optimization and train_micro_batch_size_per_gpu with no word of what asks for them in dsft."""
    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}: a DeepSpeed config, not a dsft config; dsft writes the DeepSpeed config into "
                               f"the run directory from its own keys, here {asked}: set them in a YAML config (e.g. "
                               "examples/tiny-cpu.yaml) or with --set, and give that config")
    assert load_config(None, [f"{key.replace(': ', '=')}" for key in asked.split(", ")])  # the keys it names are valid


def test_a_value_quoted_back_is_cut_to_a_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"train.lr={list(range(500))}"])
    [problem] = info.value.problems
    assert problem.startswith("train.lr: Input should be a valid number, got [0, 1, 2,")
    assert problem.endswith(", ... (a list of 500 items)") and len(problem) < 300, problem


def test_a_config_in_another_encoding_names_the_line_and_the_encoding(tmp_path: Path) -> None:
    """A config saved as GBK (a Chinese comment from a Chinese-locale Windows editor) or UTF-16 said only 'not
    UTF-8 text'."""
    gbk = tmp_path / "gbk.yaml"
    gbk.write_bytes("train:\n  lr: 1.0e-4  # 学习率\n".encode("gb18030"))
    with pytest.raises(ConfigError) as info:
        load_config(gbk)
    assert str(info.value) == (f"{gbk}: not UTF-8 text (line 2); it reads as GBK/GB18030 Chinese: save the file as "
                               "UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)")
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_text("train:\n  lr: 1.0e-4\n", encoding="utf-16")
    with pytest.raises(ConfigError, match="line 1\\); it is UTF-16 text"):
        load_config(utf16)
    # Without a byte-order mark (UTF-16LE, UTF-32) it decoded as UTF-8 full of NULs: 'not valid YAML: unacceptable
    # character #x0000', no word of the encoding.
    for encoding, family in (("utf-16-le", "UTF-16LE"), ("utf-32-le", "UTF-32LE")):
        utf16.write_bytes("train:\n  lr: 1.0e-4\n".encode(encoding))
        with pytest.raises(ConfigError, match=f"not UTF-8 text; it reads as {family} text .* iconv -f {family}"):
            load_config(utf16)


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """A second `train:` section (two pasted snippets) silently replaced the first: lr 1e-4 was lost. YAML
    merge keys still let a later key override a merged one."""
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  lr: 1.0e-4\nmodel:\n  name_or_path: x\ntrain:\n  method: full\n")
    with pytest.raises(ConfigError) as info:
        load_config(twice)
    assert str(info.value) == (f"{twice}: not valid YAML at line 5, column 1: the key 'train' is given twice in "
                               "one mapping (first at line 1); YAML would keep only the last, so merge them")
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  lr: 1.0e-4\n  method: lora\n  lr: 2.0e-4\n")
    with pytest.raises(ConfigError, match="line 4, column 3: the key 'lr' is given twice in one mapping"):
        load_config(nested)
    with pytest.raises(ConfigError, match="the key 'lr' is given twice"):
        parse_override("train={lr: 1, lr: 2}")
    merged = tmp_path / "merged.yaml"
    merged.write_text("train: &t\n  lr: 1.0e-4\n  method: full\n"
                      "lora:\n  r: 8\neval: {<<: {steps: 5, max_new_tokens: 8}, steps: 7}\n")
    config = load_config(merged)
    assert (config.train.lr, config.eval.steps, config.eval.max_new_tokens) == (1.0e-4, 7, 8)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="data: val_ratio \\+ test_ratio must be < 1"):
        load_config(None, ["data.val_ratio=0.6", "data.test_ratio=0.5"])
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(None, ["train.max_steps=0"])


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.lr")


@pytest.mark.parametrize("key", ["train..lr", ".train.lr", "train.lr.", "."])
def test_an_override_key_with_an_empty_part_is_refused(key: str) -> None:
    """train..lr was read as train.lr: a doubled or stray dot is a typo to show, not to guess past."""
    with pytest.raises(ConfigError, match="empty part"):
        parse_override(f"{key}=1")


def test_shipped_example_configs_parse() -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    examples = sorted(root.rglob("*.yaml"))
    assert examples, "examples/ should ship at least one config"
    guides = [p for p in examples if p.relative_to(root).parts[0] == "guides"]
    assert len(guides) == 5, "one config per guide under examples/guides/"
    for path in examples:
        load_config(path)


def test_a_single_data_path_may_be_a_string(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: data/train.jsonl\n  val: data/val.jsonl\n")
    cfg = load_config(path, ["data.test=data/test.jsonl"])
    assert (cfg.data.train, cfg.data.val, cfg.data.test) == (["data/train.jsonl"], ["data/val.jsonl"],
                                                             ["data/test.jsonl"])


def test_config_show_describe_keeps_whole_keys_when_piped(run_cli) -> None:
    from dsft.config import describe_config

    code, out, _ = run_cli(["config", "show", "--describe"])
    assert code == 0
    keys = {line.split("\t", 1)[0] for line in out.splitlines()}
    assert {key for key, _, _ in describe_config(load_config(None))} <= keys


def test_the_runs_anywhere_example_names_data_that_ships(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dsft train examples/tiny-cpu.yaml --out runs/tiny` from the repository root trains as written."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    assert input_problems(load_config(root / "examples" / "tiny-cpu.yaml")) == []


def test_numbers_with_a_leading_zero_or_a_colon_are_read_as_written(tmp_path: Path) -> None:
    """YAML 1.1 (PyYAML's loader) read ``save_steps: 010`` as octal 8 and ``max_steps: 1:30`` as base-60 90: a run
    saved at other steps, or ran other steps, than the file says. 010 is now ten (as YAML 1.2 reads it) and 1:30
    text, refused naming its key; in a --set too."""
    config_file = tmp_path / "c.yaml"
    config_file.write_text("train:\n  save_steps: 010\n  max_steps: 0_20\n")
    config = load_config(config_file)
    assert (config.train.save_steps, config.train.max_steps) == (10, 20)
    assert load_config(None, ["train.save_steps=017"]).train.save_steps == 17
    config_file.write_text("train:\n  max_steps: 1:30\n")
    with pytest.raises(ConfigError, match=r"train\.max_steps: .*got '1:30'"):
        load_config(config_file)
    with pytest.raises(ConfigError, match=r"train\.lr: .*got '1:30\.5'"):
        load_config(None, ["train.lr=1:30.5"])


@pytest.mark.parametrize("url", ["api.deepseek.com/v1", "not a url", "ftp://host/v1", "http://", "127.0.0.1:8000/v1"])
def test_an_endpoint_base_url_without_http_is_refused_naming_its_key(url: str) -> None:
    """It was accepted, and `dsft data distill` (augment likewise) then failed every request with httpx's
    'Request URL is missing an http:// or https:// protocol', reported as an endpoint that does not answer."""
    for key in ("data.distill.endpoint.base_url", "data.augment.endpoint.base_url"):
        with pytest.raises(ConfigError, match=rf"{re.escape(key)}: must be an http:// or https:// URL"):
            load_config(None, [f"{key}={url}"])
    assert load_config(None, ["data.distill.endpoint.base_url=HTTP://127.0.0.1:8000/v1"]).data.distill.endpoint
