"""Training data whose `tools` definitions the template cannot render is said aloud and counted, not silent."""

from __future__ import annotations

import logging

from dsft.data.conversation import Conversation, Message
from dsft.data.formats import to_conversation
from dsft.data.preference import parse_preference
from dsft.data.reasoning_policy import without_reasoning
from dsft.models.loading import load_tokenizer
from dsft.templates import get_template
from dsft.training.examples import tokenize_conversations
from dsft.training.preference_examples import render_split

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def conversations() -> list[Conversation]:
    with_tools = Conversation([Message("user", "Weather in Paris?"), Message("assistant", "", tool_calls=[CALL]),
                               Message("tool", "sunny"), Message("assistant", "Sunny.")], tools=TOOLS)
    plain = Conversation([Message("user", "Hi"), Message("assistant", "Hello.")])
    return [with_tools, plain]


def test_unrendered_tool_definitions_are_counted_and_warned(tiny_model_dir, caplog) -> None:
    tokenizer = load_tokenizer(tiny_model_dir("tiny-deepseek-v3"))
    with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
        split = tokenize_conversations(conversations(), get_template("deepseek-v3"), tokenizer)
    assert split.tools_not_rendered == 1 and len(split.examples) == 2
    assert "1 conversation(s) carry tool definitions" in caplog.text and "deepseek-v3 template" in caplog.text
    for name in ("deepseek-v3.2", "deepseek-v4"):  # they render the definitions
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
            rendered = tokenize_conversations(conversations(), get_template(name), tokenizer)
        assert rendered.tools_not_rendered == 0 and "tool definitions" not in caplog.text, name
        assert "## Tools" in tokenizer.decode(rendered.examples[0]["input_ids"]), name


def test_preference_records_count_unrendered_tool_definitions_as_sft_does(tiny_model_dir, caplog) -> None:
    """Preference splits have the SFT split's shape: DPO pairs, KTO completions and GRPO prompts whose tools the
    template drops are counted (run.json ``tools_not_rendered``) and warned about."""
    tokenizer = load_tokenizer(tiny_model_dir("tiny-deepseek-v3"))
    rows = [({"prompt": "Weather in Paris?", "chosen": "Sunny.", "rejected": "No idea.", "tools": TOOLS}, "pair"),
            ({"prompt": "Weather?", "completion": "Sunny.", "label": True, "tools": TOOLS}, "labeled"),
            ({"prompt": "Weather in Paris?", "answer": "sunny", "tools": TOOLS}, "prompt")]
    for row, kind in rows:
        records = [parse_preference(row, kind), parse_preference({k: v for k, v in row.items() if k != "tools"}, kind)]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
            split = render_split(records, get_template("deepseek-v3"), tokenizer, None, None)
        assert (split.tools_not_rendered, len(split.examples)) == (1, 2), kind
        assert "1 conversation(s) carry tool definitions" in caplog.text
        for name in ("deepseek-v3.2", "deepseek-v4"):  # they render the definitions
            assert render_split(records, get_template(name), tokenizer, None, None).tools_not_rendered == 0, (kind, name)


def test_reasoning_a_template_leaves_out_of_a_trained_turn_is_counted_and_warned(caplog) -> None:
    """V3.1 has no thinking form for a turn that calls tools or follows tool results: the reasoning of such a
    trained turn vanished from training without a word (the 'reasoning lost after SFT' trap)."""
    from dsft.models.tokenizers import load_deepseek_tokenizer

    tokenizer = load_deepseek_tokenizer()
    tool_use = Conversation([Message("user", "Weather in Paris?"),
                             Message("assistant", "", reasoning="I need the weather.", tool_calls=[CALL]),
                             Message("tool", "sunny"), Message("assistant", "Sunny.", reasoning="It said sunny.")],
                            meta={"origin": "t.jsonl:1"})
    thought = Conversation([Message("user", "2+2?"), Message("assistant", "4", reasoning="Add.")], meta={"origin": "t.jsonl:2"})
    with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
        split = tokenize_conversations([tool_use, thought], get_template("deepseek-v3.1"), tokenizer)
    assert split.reasoning_not_rendered == 1 and len(split.examples) == 2
    assert "1 conversation(s) have reasoning on a trained turn that the deepseek-v3.1 template does not render " \
           "(first: t.jsonl:1)" in caplog.text
    for name in ("deepseek-r1", "deepseek-v3.2", "deepseek-v4", "deepseek-v3"):  # each has a place for it
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
            rendered = tokenize_conversations([tool_use, thought], get_template(name), tokenizer)
        assert rendered.reasoning_not_rendered == 0 and "reasoning on a trained turn" not in caplog.text, name
    forced = tokenize_conversations([thought], get_template("deepseek-v3.1"), tokenizer, thinking=False)
    assert forced.reasoning_not_rendered == 1
    assert tokenize_conversations([thought], get_template("deepseek-v3.1"), tokenizer, masking="last").reasoning_not_rendered == 0



def test_reasoning_a_models_own_template_has_no_place_for_is_warned_with_what_applies(tiny_model_dir, caplog) -> None:
    """Guide 002's CoT data on a model with a template of its own (SmolLM2, Qwen2.5: `hf`) trains without the chain
    of thought; the warning's advice was about deepseek-v3.1's tool turns, which have nothing to do with it."""
    tokenizer = load_tokenizer(tiny_model_dir("tiny-deepseek-llm"))
    # A template that, like SmolLM2's and Qwen2.5's, writes role and content and never reasoning_content.
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}{% if m['role'] == "
                               "'assistant' %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}{% endfor %}"
                               "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    thought = Conversation([Message("user", "2+2?"), Message("assistant", "4", reasoning="Add two and two.")],
                           meta={"origin": "cot.json item 1"})
    with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
        split = tokenize_conversations([thought], get_template("hf", tokenizer), tokenizer)
    assert split.reasoning_not_rendered == 1 and len(split.examples) == 1
    assert "1 conversation(s) have reasoning on a trained turn that the hf template does not render (first: cot.json " \
           "item 1)" in caplog.text
    assert "The model's own chat template (its tokenizer's chat_template) writes no reasoning_content" in caplog.text
    assert "deepseek-v3.1" not in caplog.text and "data.reasoning=drop" in caplog.text

def test_two_assistant_turns_in_a_row_written_without_a_header_are_counted_and_warned(caplog) -> None:
    """V3.1 and V3.2 write an assistant turn that follows another straight after its end-of-sentence token, with no
    header (as their official templates do): such data trained on a layout the model never saw without a word.
    V3, R1 and V4 write the header, so nothing is said for them; a preference prompt is checked alike."""
    from dsft.models.tokenizers import load_deepseek_tokenizer

    tokenizer = load_deepseek_tokenizer()
    twice = Conversation([Message("user", "Hi"), Message("assistant", "Hello."), Message("assistant", "How are you?")],
                         meta={"origin": "t.jsonl:1"})
    after_tool = Conversation([Message("user", "Weather?"), Message("assistant", "", tool_calls=[CALL]),
                               Message("tool", "sunny"), Message("assistant", "Sunny.")], meta={"origin": "t.jsonl:2"})
    pair = parse_preference({"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                        {"role": "assistant", "content": "Anything else?"}, {"role": "user", "content": "No"}],
                             "chosen": "Bye.", "rejected": "What?"}, "pair")
    pair.meta["origin"] = "p.jsonl:1"
    for name in ("deepseek-v3.1", "deepseek-v3.2"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
            split = tokenize_conversations([twice, after_tool], get_template(name), tokenizer)
            pairs = render_split([pair], get_template(name), tokenizer, None, None)
        assert (split.assistant_turns_run_together, len(split.examples)) == (1, 2), name  # trained as written
        assert pairs.assistant_turns_run_together == 1, name
        assert (f"1 conversation(s) have two assistant turns in a row (first: t.jsonl:1: messages[2]), which the {name} "
                "template writes with no assistant header between them") in caplog.text
        assert "(first: p.jsonl:1: messages[2])" in caplog.text
    for name in ("deepseek-v3", "deepseek-r1", "deepseek-v4"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
            split = tokenize_conversations([twice], get_template(name), tokenizer)
        assert split.assistant_turns_run_together == 0 and "two assistant turns" not in caplog.text, name


def test_two_assistant_turns_in_a_row_are_named_where_they_are_in_the_file(caplog) -> None:
    """A separate system field goes in front of the file's messages: the warning named the messages dsft built
    (messages[3] for the file's messages[2]), also after the reasoning policy rebuilt the conversation."""
    from dsft.models.tokenizers import load_deepseek_tokenizer

    record = {"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"},
                                                  {"role": "assistant", "content": "Hello."},
                                                  {"role": "assistant", "content": "<think>Ask.</think>How are you?"}]}
    conversation = without_reasoning(to_conversation(record))
    conversation.meta["origin"] = "t.jsonl:1"
    with caplog.at_level(logging.WARNING, logger="dsft.training.examples"):
        tokenize_conversations([conversation], get_template("deepseek-v3.1"), load_deepseek_tokenizer())
    assert "(first: t.jsonl:1: messages[2])" in caplog.text
