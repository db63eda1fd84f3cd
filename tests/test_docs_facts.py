"""What README.md, docs/ and the example guides name exists: every `dsft` command and flag in their code, every
config key they write in backticks or in a YAML block, and every YAML block they show loads as a config."""

import ast
import json
import re
from pathlib import Path

import pytest
import typer.main
import yaml

from dsft.cli.app import app
from dsft.config import DsftConfig
from dsft.config.loader import parse_override
from dsft.config.schema import Section

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.md")])
WORD = re.compile(r"[a-z][a-z0-9-]*")
FILES = (".md", ".yaml", ".json", ".jsonl", ".gguf", ".py", ".safetensors")
NOT_CONFIG = {"model.layers", "model.generate"}  # a Hugging Face model's attributes, named in prose
# Commands the docs show on purpose as refused, with what the refusal says (checked below).
REFUSED_EXAMPLES = {"dsft train c.yaml --max-steps 3": "--set train.max_steps=VALUE"}


def _code(text: str) -> list[tuple[int, str]]:
    """(line, code) for every fenced block and inline code span, a shell line continuation joined."""
    found = [(m.start(), m.group(1)) for m in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S)]
    found += [(m.start(), m.group(1)) for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", text)]
    return [(text.count("\n", 0, start) + 1, code.replace("\\\n", " ")) for start, code in found]


def _keys(model: type[Section], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        annotation = field.annotation
        inner = [annotation, *getattr(annotation, "__args__", ())]
        inner += [arg for outer in inner[1:] for arg in getattr(outer, "__args__", ())]
        for kind in inner:
            if isinstance(kind, type) and issubclass(kind, Section):
                keys |= _keys(kind, f"{prefix}{name}.")
    return keys


def _dsft_commands():
    """(doc:line, command path, the words after it) for every `dsft ...` written in a doc's code."""
    for doc in DOCS:
        for line, code in _code(doc.read_text(encoding="utf-8")):
            if code.strip() in REFUSED_EXAMPLES:
                continue
            for match in re.finditer(r"(?<![\w/.-])dsft((?: +[^\s`|;&)\]'\"]+)+)", code):
                words = [w for w in match.group(1).split() if w != "--debug"]
                yield f"{doc.relative_to(ROOT)}:{line}", words


def test_every_dsft_command_and_flag_the_docs_name_exists() -> None:
    root = typer.main.get_command(app)
    problems = []
    for where, words in _dsft_commands():
        command, path = root, []
        while words and words[0] in getattr(command, "commands", {}):
            command = command.commands[words[0]]
            path.append(words.pop(0))
        if hasattr(command, "commands"):  # a group: the next plain word must be one of its commands
            if words and WORD.fullmatch(words[0]) and (command is not root or not path):
                if command is not root:
                    problems.append(f"{where}: dsft {' '.join(path)} has no command {words[0]!r}")
            continue
        options = {"--help"} | {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words:
            flag = word.split("=", 1)[0].rstrip(",.:")
            if re.fullmatch(r"--?[a-z][a-z0-9-]*", flag) and flag not in options:
                problems.append(f"{where}: dsft {' '.join(path)} has no option {flag}")
    assert not problems, "\n".join(problems)


def test_the_dsft_commands_the_readme_table_names_exist() -> None:
    """A prose sentence may start with 'dsft'; a command in the README's pipeline table may not be a typo."""
    root = typer.main.get_command(app)
    table = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    named = {m.group(1) for line in table for m in re.finditer(r"`dsft ([a-z][a-z0-9-]*)", line)}
    assert named and named <= set(root.commands), named - set(root.commands)


def test_every_config_key_the_docs_name_exists() -> None:
    keys = _keys(DsftConfig)
    sections = "|".join(DsftConfig.model_fields)
    pattern = re.compile(rf"(?<![\w./-])((?:{sections})\.[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)(\*?)(?![\w(/-])")
    problems = []
    for doc in DOCS:
        for line, code in _code(doc.read_text(encoding="utf-8")):
            if code.lstrip().startswith(("from ", "import ")) or "(" in code:  # Python, not keys
                continue
            for match in pattern.finditer(code):
                key, wildcard = match.groups()
                parts = key.split(".")  # dsft.eval.numbers or a name in it is a module, not a key
                modules = [ROOT / "src" / "dsft" / Path(*parts[:n]) for n in range(2, len(parts) + 1)]
                if (key in keys or key in NOT_CONFIG or key.endswith(FILES) or (wildcard and any(k.startswith(key) for k in keys))
                        or any(m.with_suffix(".py").exists() or m.is_dir() for m in modules)):
                    continue
                problems.append(f"{doc.relative_to(ROOT)}:{line}: {key}")
    assert not problems, "no such config key:\n" + "\n".join(problems)


def test_every_set_override_the_docs_show_parses_to_a_config_key() -> None:
    keys = _keys(DsftConfig)
    problems = []
    for where, words in _dsft_commands():
        for flag, value in zip(words, words[1:]):
            if flag in ("--set", "--grid", "--range") and "=" in value:
                key, _ = parse_override(value)
                if ".".join(key) not in keys:
                    problems.append(f"{where}: {flag} {value}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_config_the_docs_show_loads(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for match in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
        shown = yaml.safe_load(match.group(1))
        if isinstance(shown, dict) and set(shown) <= set(DsftConfig.model_fields):
            DsftConfig.model_validate(shown)


def test_the_metrics_example_in_docs_eval_is_what_dsft_metrics_prints(tmp_path: Path, run_cli) -> None:
    """docs/eval.md shows a predictions file and the JSON `dsft metrics --json` prints for it: every key, every
    count and every value (to the digits shown)."""
    text = (ROOT / "docs" / "eval.md").read_text(encoding="utf-8")
    section = text[text.index("## Scoring a predictions file"):]
    lines, shown = re.search(r"```\n(\{\"prediction\".*?)```.*?```json\n(.*?)```", section, re.S).groups()
    (tmp_path / "preds.jsonl").write_text(lines, encoding="utf-8")
    code, out, _ = run_cli(["metrics", "--predictions", str(tmp_path / "preds.jsonl"), "--json"])
    assert code == 0
    printed, expected = json.loads(out), json.loads(shown)
    assert printed.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            digits = len(repr(value).split(".")[1])
            assert round(printed[key], digits) == value, key
        else:
            assert printed[key] == value, key


def _anchors(doc: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown file: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def test_every_relative_link_in_the_docs_reaches_its_file_and_heading() -> None:
    problems = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"\]\(([^)\s]+)\)", text):
            link = match.group(1)
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, fragment = link.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            if not target.exists():
                problems.append(f"{where}: {link}: no such file")
            elif fragment and target.suffix == ".md" and fragment not in _anchors(target):
                problems.append(f"{where}: {link}: no such heading")
    assert not problems, "\n".join(problems)


def test_the_config_sections_and_the_layers_the_docs_list_are_the_real_ones() -> None:
    # The order tests/test_layering.py enforces (read, not imported: test files do not import each other).
    layering = (ROOT / "tests" / "test_layering.py").read_text(encoding="utf-8")
    order = ast.literal_eval(re.search(r"^ORDER = (\[.*?\])$", layering, re.M).group(1))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.search(r"One YAML file with sections (.*?)\.\n", readme, re.S).group(1)
    assert re.findall(r"`(\w+)`", sections) == list(DsftConfig.model_fields)
    internals = (ROOT / "docs" / "internals.md").read_text(encoding="utf-8")
    assert re.search(r"sections `([a-z \n]+)`", internals).group(1).split() == list(DsftConfig.model_fields)
    layout = re.search(r"one package per stage under `src/dsft/` \((.*?)\)", readme, re.S).group(1)
    assert re.findall(r"`(\w+)`", layout) == order
    chain = re.search(r"Layers import only downward: (.*?)\. ", internals, re.S).group(1)
    assert re.findall(r"`(\w+)`", chain) == order


def test_the_tiny_preset_sizes_in_docs_models_are_the_presets(tiny_model_dir) -> None:
    """docs/models.md's preset table (and the README's "13-20M") give each preset's parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    table = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    stated = {m.group(1): int(m.group(2).replace(",", ""))
              for m in re.finditer(r"^\| `(tiny-[a-z0-9-]+)` \| `\w+` \|.*\| ([\d,]+) \|$", table, re.M)}
    assert set(stated) == {"tiny-deepseek-v3", "tiny-r1-distill-qwen", "tiny-deepseek-llm"}
    for name, count in stated.items():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_dir(name)))
        assert sum(p.numel() for p in model.parameters()) == count, name
    assert "13–20M-parameter" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert 13e6 <= min(stated.values()) and max(stated.values()) < 20e6


@pytest.mark.parametrize("example", sorted(REFUSED_EXAMPLES))
def test_a_command_the_docs_show_as_refused_is_refused_as_they_say(example: str, run_cli) -> None:
    assert any(f"`{example}`" in doc.read_text(encoding="utf-8") for doc in DOCS)
    code, _, err = run_cli(example.split()[1:])
    assert code == 2 and REFUSED_EXAMPLES[example] in err
