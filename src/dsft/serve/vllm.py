"""The vLLM engine: build (and run) the ``vllm serve`` command equivalent to a ``dsft serve`` call.

For GPU production dsft hands over to vLLM with the same model, adapters, chat template, reasoning
parser and tool-call parser that ``dsft serve`` would use. Facts (vLLM 0.9+): the template family names its
``--reasoning-parser`` (``deepseek_r1`` for R1, ``deepseek_v3`` for the hybrid-thinking V3.1/V3.2 families,
``deepseek_v4`` for V4, thinking via the ``chat_template_kwargs`` flag) and its ``--tool-call-parser``
(needs ``--enable-auto-tool-choice``); LoRA needs ``--enable-lora --lora-modules NAME=PATH`` and a
``--max-lora-rank`` at least the adapters' rank. Releases that know DeepSeek-V3.2's and V4's architectures
default them to their own tokenizer modes (``deepseek_v32``, ``deepseek_v4``), which render prompts with
DeepSeek's encoder and ignore ``--chat-template``; ``--tokenizer-mode hf`` keeps the training template.
Arguments given through ``engine_args`` come last, so they win (argparse keeps an option's last value).
vLLM itself is not a dsft dependency.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from dsft.errors import DsftError, UnsupportedError
from dsft.export.source import ExportSource
from dsft.serve.serving_model import adapter_rank
from dsft.serve.settings import ServeSettings
from dsft.templates import get_template

# vLLM accepts only these values for --max-lora-rank.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def vllm_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise UnsupportedError(f"LoRA rank {rank} is above vLLM's maximum {VLLM_LORA_RANKS[-1]}; merge the adapter "
                           "with `dsft export --format hf` and serve the merged model")


def chat_template_path(source: ExportSource, cache_dir: Path) -> Path | None:
    """The training chat template for ``vllm serve --chat-template``, as something the serving machine has.

    None where the tokenizer already carries it (an HF export, or any tokenizer whose own template is
    the family's): vLLM then uses the tokenizer's template and no flag is needed. Else the file saved
    beside the tokenizer; else, for a run, a file written into the run directory, so the printed command
    works wherever the run directory is mounted. A bare model directory is never written to
    (transformers would pick the file up as the tokenizer's own template); its file goes to
    ``cache_dir``. None also for the ``hf`` template: it means the tokenizer's own.
    """
    saved = source.tokenizer_dir / CHAT_TEMPLATE_FILE
    if saved.is_file():
        return saved
    if source.template == "hf":
        return None
    text = get_template(source.template).chat_template
    if _tokenizer_template(source.tokenizer_dir) == text:
        return None
    homes = [source.run_dir] if source.run_dir is not None else []
    for target in [d / CHAT_TEMPLATE_FILE for d in homes] + [cache_dir / "chat-templates" / f"{source.template}.jinja"]:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (target.is_file() and target.read_text(encoding="utf-8") == text):
                target.write_text(text, encoding="utf-8")
            return target
        except OSError:
            continue
    raise DsftError(f"cannot write the chat template file for vLLM into {', '.join(map(str, homes))} or {cache_dir}")


def _tokenizer_template(tokenizer_dir: Path) -> str | None:
    """The chat template stored in ``tokenizer_config.json`` (None when absent or unreadable)."""
    try:
        config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template")
    return template if isinstance(template, str) else None


def build_vllm_command(
    source: ExportSource, adapters: dict[str, Path], settings: ServeSettings, chat_template: Path | None,
    tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1, engine_args: Sequence[str] = (),
) -> list[str]:
    """The ``vllm serve`` argv for ``source`` plus named ``adapters``.

    A LoRA run is served as its base model with the run's adapter under the served model name (so clients
    asking for that name get the fine-tune, as with ``dsft serve``); the bare base gets ``NAME-base``.
    """
    lora_modules = dict(adapters)
    served = settings.served_model_name
    if source.adapter_dir is not None:
        lora_modules = {served: source.adapter_dir, **lora_modules}
        served = f"{served}-base"
    command = ["vllm", "serve", str(source.model_dir), "--served-model-name", served,
               "--host", settings.host, "--port", str(settings.port)]
    if source.tokenizer_dir != source.model_dir:
        command += ["--tokenizer", str(source.tokenizer_dir)]
    family = get_template(source.template)
    if family.vllm_tokenizer_mode:
        # Without it vLLM renders V3.2/V4 prompts with its own encoder, whatever template it is given.
        command += ["--tokenizer-mode", family.vllm_tokenizer_mode]
    if chat_template is not None:
        command += ["--chat-template", str(chat_template)]
    if family.vllm_reasoning_parser:
        command += ["--reasoning-parser", family.vllm_reasoning_parser]
    if family.vllm_tool_parser:
        # Requests with `tools` get parsed `tool_calls`, as from `dsft serve`.
        command += ["--enable-auto-tool-choice", "--tool-call-parser", family.vllm_tool_parser]
    if tensor_parallel_size > 1:
        command += ["--tensor-parallel-size", str(tensor_parallel_size)]
    if pipeline_parallel_size > 1:
        # Several nodes: vLLM places the stages on a Ray cluster started beforehand (`ray start`).
        command += ["--pipeline-parallel-size", str(pipeline_parallel_size)]
    if settings.max_model_len:
        command += ["--max-model-len", str(settings.max_model_len)]
    if lora_modules:
        rank = vllm_lora_rank(max(adapter_rank(path) for path in lora_modules.values()))
        command += ["--enable-lora", "--lora-modules", *[f"{name}={path}" for name, path in lora_modules.items()],
                    "--max-lora-rank", str(rank)]
    if settings.api_key:
        command += ["--api-key", settings.api_key]
    return command + list(engine_args)


def printable(command: list[str], hide_api_key: bool = True) -> str:
    """The command as one shell line (the API key masked unless asked otherwise)."""
    shown = list(command)
    if hide_api_key and "--api-key" in shown:
        shown[shown.index("--api-key") + 1] = "****"
    return shlex.join(shown)


def run_vllm(command: list[str]) -> int:
    """Run ``vllm serve`` in the foreground; returns its exit code."""
    if shutil.which(command[0]) is None:
        raise DsftError("vLLM is not installed (no `vllm` on PATH); on a CUDA machine run `pip install vllm`, "
                        "or pass --dry-run to print the command")
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130
