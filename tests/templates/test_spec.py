"""The family seam: every registered family answers the ChatTemplate Protocol, and the rest of dsft asks it.

Callers never match a family by name, every choice of ``template.name`` comes from the registry, and
the DeepSeek marker strings are defined once.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dsft.config.schema import TemplateConfig
from dsft.errors import UnsupportedError
from dsft.eval.reasoning import prompt_opens_think as eval_rule
from dsft.export.ollama import render_modelfile, sampling_parameters
from dsft.models.tokenizers import chat_template as released_template
from dsft.serve.prompts import generation_starts_in_reasoning
from dsft.templates import TEMPLATE_NAMES, ChatTemplate, get_template
from dsft import markers
from dsft.template_families import FAMILIES

SRC = Path(__file__).resolve().parents[2] / "src" / "dsft"
CHATML = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


class Tok:
    """A tokenizer stand-in carrying only a chat template."""

    def __init__(self, chat_template: str | None) -> None:
        self.chat_template = chat_template


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_registered_family_implements_the_protocol(name: str) -> None:
    family = get_template(name, Tok(CHATML))  # hf reads its Jinja from the tokenizer
    assert isinstance(family, ChatTemplate)
    assert family.name == name and family.description
    assert family.tool_call_format


def test_config_choices_are_the_registry() -> None:
    choices = TemplateConfig.model_fields["name"].annotation.__args__
    assert choices == ("auto", *FAMILIES)


def test_family_facts_reach_export_serve_and_eval() -> None:
    assert sampling_parameters("deepseek-r1", None) == {"temperature": 0.6, "top_p": 0.95}
    assert sampling_parameters("hf", None) == {}


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
@pytest.mark.parametrize("prompt", [
    "<｜User｜>q<｜Assistant｜><think>\n", "<｜User｜>q<｜Assistant｜><think>", "<｜User｜>q<｜Assistant｜></think>",
    "<｜User｜>q<｜Assistant｜>", "User: q\n\nAssistant:", "<｜tool▁outputs▁end｜>",
])
def test_serve_and_eval_split_outputs_by_the_same_rule(name: str, prompt: str) -> None:
    family = get_template(name)
    assert generation_starts_in_reasoning(name, prompt) == family.prompt_opens_think(prompt)
    # The family adds to the text rule only what it knows: R1 replies inside a think block after any prompt.
    assert family.prompt_opens_think(prompt) == (eval_rule(prompt) or name == "deepseek-r1")


def test_hf_ollama_template_comes_from_the_models_own_template() -> None:
    r1 = get_template("hf", Tok(released_template("deepseek-r1"))).ollama_template()
    assert r1 == get_template("deepseek-r1").ollama_template()
    assert render_modelfile("hf", tokenizer=Tok(released_template("deepseek-llm"))) == render_modelfile("deepseek-llm")
    # A turn-by-turn template (here contents only) gets a derived Go template (tests/export/test_ollama_hf.py);
    # one whose output is not turn by turn (here: messages in reverse order) is refused.
    assert "{{ .Content }}" in get_template("hf", Tok(CHATML)).ollama_template().template
    reversed_turns = "{% for m in messages|reverse %}{{ m['content'] }};{% endfor %}"
    with pytest.raises(UnsupportedError, match="not a DeepSeek family's.*set template.name"):
        get_template("hf", Tok(reversed_turns)).ollama_template()
    with pytest.raises(UnsupportedError, match="no chat_template"):
        get_template("hf", Tok(None)).ollama_template()


def _python_files() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "templates" not in p.relative_to(SRC).parts[:1]]


def test_no_family_name_matching_outside_templates() -> None:
    pattern = re.compile(r"""startswith\(\(?["']deepseek""")
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in _python_files()
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not offenders


def test_marker_strings_are_defined_once() -> None:
    """No module outside markers.py binds a name to a DeepSeek marker string."""
    values = {v for k, v in vars(markers).items() if k.isupper() and isinstance(v, str)}
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "markers.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value in values:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple) and any(
                    isinstance(e, ast.Constant) and e.value in values for e in node.value.elts):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders


def test_lower_layers_read_the_tables_without_loading_the_renderers() -> None:
    code = ("import sys, dsft.config, dsft.models.tokenizers; "
            "print(sorted(m for m in sys.modules if m.startswith('dsft.templates')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the tables live at the package root: no template code is loaded


def test_families_without_jinja_are_detected_by_model_type() -> None:
    from dsft.templates import detect_template

    assert detect_template({"model_type": "deepseek_v32"}) == "deepseek-v3.2"
    assert detect_template({"model_type": "deepseek_v4", "chat_template": released_template("deepseek-r1")}) == (
        "deepseek-v4")


def test_hf_batched_rendering_equals_one_by_one(tokenizer) -> None:
    """Training renders `hf` conversations through render_train_many (one batched tokenizer call)."""
    import copy

    from dsft.data.conversation import Conversation, Message

    tok = copy.copy(tokenizer)
    tok.chat_template = released_template("deepseek-llm")
    convs = [
        Conversation([Message("system", "S"), Message("user", "Hi"), Message("assistant", "Hello!")]),
        Conversation([Message("user", "2+2?"), Message("assistant", "4"), Message("user", "中文?"),
                      Message("assistant", "是")]),
        Conversation([Message("assistant", "Raw text.")], meta={"kind": "text"}),
    ]
    family = get_template("hf", tok)
    for masking in ("assistant", "last", "all"):
        batched = family.render_train_many(convs, tok, masking=masking)
        single = [family.render_train(c, tok, masking=masking) for c in convs]
        assert [(r.input_ids, r.supervised) for r in batched] == [(r.input_ids, r.supervised) for r in single]
        assert all(r.num_supervised for r in batched)
