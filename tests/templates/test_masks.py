"""Masks: the supervised tokens are exactly the trained assistant targets plus their EOS, for every family."""

from __future__ import annotations

import doctest
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dsft.data.conversation import Conversation, Message
from dsft.errors import DsftError
from dsft.templates import base as templates_base
from dsft.templates import get_template

from template_cases import FAMILY_STRATEGIES, SYSTEM, supervised_spans

EOS = "<｜end▁of▁sentence｜>"


def two_turns() -> Conversation:
    return Conversation([
        Message("system", SYSTEM),
        Message("user", "Hi"),
        Message("assistant", "Hello!", reasoning="Greeting."),
        Message("user", "What is 2+2?"),
        Message("assistant", "4", reasoning="2+2=4"),
    ])


# The target each family trains for the two assistant turns above (reasoning kept in its format).
EXPECTED_TARGETS = {
    "deepseek-llm": [f" <think>\nGreeting.\n</think>\n\nHello!{EOS}", f" <think>\n2+2=4\n</think>\n\n4{EOS}"],
    "deepseek-v3": [f"<think>\nGreeting.\n</think>\n\nHello!{EOS}", f"<think>\n2+2=4\n</think>\n\n4{EOS}"],
    "deepseek-r1": [f"Greeting.\n</think>\n\nHello!{EOS}", f"2+2=4\n</think>\n\n4{EOS}"],
    "deepseek-v3.1": [f"Greeting.</think>Hello!{EOS}", f"2+2=4</think>4{EOS}"],
    "deepseek-v4": [f"Greeting.</think>Hello!{EOS}", f"2+2=4</think>4{EOS}"],
    "deepseek-v3.2": [f"Greeting.</think>Hello!{EOS}", f"2+2=4</think>4{EOS}"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_supervised_tokens_are_exactly_the_targets_plus_eos(name: str, tokenizer: Any) -> None:
    rendered = get_template(name).render_train(two_turns(), tokenizer)
    assert supervised_spans(rendered, tokenizer) == EXPECTED_TARGETS[name]
    # The unsupervised rest decodes to the prompt text: nothing is lost between the two.
    assert tokenizer.decode(rendered.input_ids, skip_special_tokens=False) == rendered.text


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_masking_last_trains_only_the_final_turn(name: str, tokenizer: Any) -> None:
    rendered = get_template(name).render_train(two_turns(), tokenizer, masking="last")
    assert supervised_spans(rendered, tokenizer) == EXPECTED_TARGETS[name][-1:]


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_one_bos_and_every_trained_eos_supervised_although_pad_is_eos(name: str, tokenizer: Any) -> None:
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the trap: a pad-based mask would hide EOS
    rendered = get_template(name).render_train(two_turns(), tokenizer)
    ids = rendered.input_ids
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    labels = rendered.labels()
    eos_positions = [i for i, t in enumerate(ids) if t == tokenizer.eos_token_id]
    assert eos_positions and all(labels[i] == tokenizer.eos_token_id for i in eos_positions)
    assert all(lab in (-100, tok) for lab, tok in zip(labels, ids))
    assert rendered.to_example() == {"input_ids": ids, "labels": labels}


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
@pytest.mark.parametrize("thinking", [None, True, False])
def test_prompt_part_is_a_token_prefix_of_the_inference_prompt(name: str, thinking: bool | None, tokenizer: Any) -> None:
    conv = two_turns()
    template = get_template(name)
    rendered = template.render_train(conv, tokenizer, masking="last", thinking=thinking)
    prompt_len = rendered.supervised.index(True)
    # Hybrid families with thinking=None pick the mode from the trained turn's reasoning (it has some).
    mode = True if thinking is None and template.thinking_flag else thinking
    prompt = template.render_prompt(Conversation(conv.messages[:-1]), thinking=mode)
    assert rendered.input_ids[:prompt_len] == tokenizer.encode(prompt, add_special_tokens=False)
    assert rendered.text.startswith(prompt)


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_first_trained_turn_prompt_is_the_inference_prompt(name: str, tokenizer: Any) -> None:
    conv = two_turns()
    template = get_template(name)
    rendered = template.render_train(conv, tokenizer, thinking=True if template.thinking_flag else None)
    prompt = template.render_prompt(Conversation(conv.messages[:2]), thinking=True)
    assert rendered.input_ids[: rendered.supervised.index(True)] == tokenizer.encode(prompt, add_special_tokens=False)


def test_r1_turn_without_reasoning_gets_an_empty_think_block(tokenizer: Any) -> None:
    conv = Conversation([Message("user", "Hi"), Message("assistant", "Hello!")])
    rendered = get_template("deepseek-r1").render_train(conv, tokenizer)
    assert supervised_spans(rendered, tokenizer) == [f"\n</think>\n\nHello!{EOS}"]
    assert rendered.text.endswith(f"<｜Assistant｜><think>\n\n</think>\n\nHello!{EOS}")


def test_r1_inline_think_block_in_content_is_parsed(tokenizer: Any) -> None:
    conv = Conversation([Message("user", "Hi"), Message("assistant", "<think>\nGreeting.\n</think>\n\nHello!")])
    rendered = get_template("deepseek-r1").render_train(conv, tokenizer)
    assert supervised_spans(rendered, tokenizer) == [f"Greeting.\n</think>\n\nHello!{EOS}"]


def test_r1_untrained_history_turn_is_stripped_of_reasoning(tokenizer: Any) -> None:
    conv = two_turns()
    conv.messages[2].loss = False
    rendered = get_template("deepseek-r1").render_train(conv, tokenizer)
    assert "Greeting." not in rendered.text
    assert supervised_spans(rendered, tokenizer) == EXPECTED_TARGETS["deepseek-r1"][-1:]


def test_v31_thinking_false_trains_the_answer_only(tokenizer: Any) -> None:
    rendered = get_template("deepseek-v3.1").render_train(two_turns(), tokenizer, thinking=False)
    assert supervised_spans(rendered, tokenizer) == [f"Hello!{EOS}", f"4{EOS}"]
    assert "<｜Assistant｜></think>Hello!" in rendered.text


def test_v31_auto_mode_follows_each_turn(tokenizer: Any) -> None:
    conv = two_turns()
    conv.messages[2].reasoning = None
    rendered = get_template("deepseek-v3.1").render_train(conv, tokenizer)
    assert supervised_spans(rendered, tokenizer) == [f"Hello!{EOS}", f"2+2=4</think>4{EOS}"]


def test_deepseek_llm_target_starts_with_a_space(tokenizer: Any) -> None:
    conv = Conversation([Message("user", "Hi"), Message("assistant", "Hello!")])
    rendered = get_template("deepseek-llm").render_train(conv, tokenizer)
    assert rendered.text.endswith(f"User: Hi\n\nAssistant: Hello!{EOS}")
    assert supervised_spans(rendered, tokenizer) == [f" Hello!{EOS}"]


def test_loss_flag_overrides_the_strategy(tokenizer: Any) -> None:
    conv = two_turns()
    conv.messages[2].loss = True  # trained although masking=last
    conv.messages[4].loss = False  # not trained although it is the last
    rendered = get_template("deepseek-r1").render_train(conv, tokenizer, masking="last")
    assert supervised_spans(rendered, tokenizer) == EXPECTED_TARGETS["deepseek-r1"][:1]


def test_user_message_with_loss_true_is_supervised(tokenizer: Any) -> None:
    conv = two_turns()
    conv.messages[1].loss = True
    rendered = get_template("deepseek-v3").render_train(conv, tokenizer, masking="last")
    assert supervised_spans(rendered, tokenizer)[0] == "<｜User｜>Hi"


def test_masking_all_supervises_everything_but_loss_false(tokenizer: Any) -> None:
    conv = two_turns()
    rendered = get_template("deepseek-r1").render_train(conv, tokenizer, masking="all")
    assert all(rendered.supervised)
    conv.messages[0].loss = False
    rendered = get_template("deepseek-r1").render_train(conv, tokenizer, masking="all")
    assert tokenizer.decode([t for t, s in zip(rendered.input_ids, rendered.supervised) if not s]) == SYSTEM


def test_tool_call_turn_target_includes_the_calls(tokenizer: Any) -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    conv = Conversation([
        Message("user", "q"), Message("assistant", "", tool_calls=[call]), Message("tool", "r"),
        Message("assistant", "done"),
    ])
    rendered = get_template("deepseek-v3").render_train(conv, tokenizer)
    calls = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```"
             "<｜tool▁call▁end｜><｜tool▁calls▁end｜>")
    assert supervised_spans(rendered, tokenizer) == [calls + EOS, "done" + EOS]


def test_unknown_masking_and_missing_special_tokens_are_user_errors(tokenizer: Any) -> None:
    with pytest.raises(DsftError, match="^template.masking: must be one of"):  # the config key (the CLI names its flag)
        get_template("deepseek-v3").render_train(two_turns(), tokenizer, masking="some")
    assert doctest.testmod(templates_base).failed == 0  # check_masking naming --masking

    class NoMarkers:
        unk_token_id = 3

        def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
            known = {"<｜begin▁of▁sentence｜>": 0, "<｜end▁of▁sentence｜>": 1}
            return [known.get(t, self.unk_token_id) for t in tokens]

    with pytest.raises(DsftError, match="deepseek-r1.*<｜User｜>"):
        get_template("deepseek-r1").render_train(two_turns(), NoMarkers())


def test_families_reject_what_they_cannot_render() -> None:
    tool = Conversation([Message("user", "q"), Message("tool", "r")])
    with pytest.raises(DsftError, match="deepseek-llm.*role 'tool'"):
        get_template("deepseek-llm").render_prompt(tool)
    with pytest.raises(DsftError, match="no messages"):
        get_template("deepseek-v3").render_prompt(Conversation([]))
    bad_call = Conversation([Message("user", "q"), Message("assistant", "", tool_calls=[{"oops": 1}])])
    with pytest.raises(DsftError, match="tool_calls\\[0\\]"):
        get_template("deepseek-r1").render_prompt(bad_call)


@pytest.mark.parametrize("name", sorted(FAMILY_STRATEGIES))
def test_trained_last_turn_follows_its_exact_inference_prompt(name: str, tokenizer: Any) -> None:
    """For any conversation ending in an assistant turn (masking=last): the tokens before the target
    are the tokenized inference prompt of the earlier messages, and everything after is supervised."""
    template = get_template(name)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(conv=FAMILY_STRATEGIES[name], final=FAMILY_STRATEGIES[name], thinking=st.booleans())
    def check(conv: Conversation, final: Conversation, thinking: bool) -> None:
        last = next((m for m in final.messages if m.role == "assistant"), Message("assistant", "ok"))
        assume(not (name == "deepseek-v3.1" and thinking and last.tool_calls))  # V3.1 calls tools only without thinking
        conv.messages.append(last)
        rendered = template.render_train(conv, tokenizer, masking="last", thinking=thinking)
        start = rendered.supervised.index(True)
        prompt = template.render_prompt(Conversation(conv.messages[:-1], tools=conv.tools), thinking=thinking)
        assert rendered.input_ids[:start] == tokenizer.encode(prompt, add_special_tokens=False)
        assert all(rendered.supervised[start:]) and rendered.input_ids[-1] == tokenizer.eos_token_id

    check()


def test_r1_turn_after_tool_results_writes_its_own_think_block(tokenizer: Any) -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    conv = Conversation([
        Message("user", "q"), Message("assistant", "", tool_calls=[call], reasoning="need f"),
        Message("tool", "r"), Message("assistant", "done", reasoning="got r"),
    ])
    rendered = get_template("deepseek-r1").render_train(conv, tokenizer)
    calls = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```"
             "<｜tool▁call▁end｜><｜tool▁calls▁end｜>")
    assert supervised_spans(rendered, tokenizer) == [
        f"need f\n</think>\n\n{calls}{EOS}",
        f"<think>\ngot r\n</think>\n\ndone{EOS}",  # no prompt opened the block after <｜tool▁outputs▁end｜>
    ]


@pytest.mark.parametrize("name", sorted(FAMILY_STRATEGIES))
def test_plain_text_records_are_bos_text_eos(name: str, tokenizer: Any) -> None:
    conv = Conversation([Message("assistant", "Raw corpus text.")], meta={"kind": "text"})
    for masking in ("assistant", "all"):
        rendered = get_template(name).render_train(conv, tokenizer, masking=masking)
        assert rendered.text == f"<｜begin▁of▁sentence｜>Raw corpus text.{EOS}"
        assert supervised_spans(rendered, tokenizer) == (
            [rendered.text] if masking == "all" else [f"Raw corpus text.{EOS}"])


@pytest.mark.parametrize("name", sorted(FAMILY_STRATEGIES))
@pytest.mark.parametrize("masking", ["assistant", "last", "all"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batched_rendering_equals_one_by_one(tokenizer: Any, name: str, masking: str, data: Any) -> None:
    """`render_train_many` (one batched tokenizer call, what training uses) gives the same ids and masks."""
    template = get_template(name)
    convs = data.draw(st.lists(FAMILY_STRATEGIES[name], min_size=1, max_size=6))
    batched = template.render_train_many(convs, tokenizer, masking=masking)
    single = [template.render_train(c, tokenizer, masking=masking) for c in convs]
    assert [(r.input_ids, r.supervised, r.text) for r in batched] == [(r.input_ids, r.supervised, r.text) for r in single]


def test_v4_tool_call_turn_target_includes_the_dsml_calls(tokenizer: Any) -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    conv = Conversation([
        Message("user", "q"), Message("assistant", "", tool_calls=[call], reasoning="need f"),
        Message("tool", "r"), Message("assistant", "done", reasoning="got r"),
    ])
    rendered = get_template("deepseek-v4").render_train(conv, tokenizer)
    calls = ('\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="f">\n'
             '<｜DSML｜parameter name="x" string="false">1</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>')
    assert supervised_spans(rendered, tokenizer) == [f"need f</think>{calls}{EOS}", f"got r</think>done{EOS}"]
    assert rendered.text.startswith("<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜><think>need f")


def test_dsml_arguments_must_be_an_object() -> None:
    for arguments in ("[1, 2]", "{not json"):
        call = {"type": "function", "function": {"name": "f", "arguments": arguments}}
        with pytest.raises(DsftError, match="tool_calls\\[0\\].function.arguments"):
            get_template("deepseek-v4").render_prompt(Conversation([Message("user", "q"),
                                                                    Message("assistant", "", tool_calls=[call])]))


def test_v32_tool_round_targets_and_thinking_after_results(tokenizer: Any) -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": {"x": "y"}}}
    conv = Conversation([
        Message("user", "q"), Message("assistant", "", tool_calls=[call], reasoning="need f"),
        Message("tool", "r"), Message("assistant", "done", reasoning="got r"),
    ])
    rendered = get_template("deepseek-v3.2").render_train(conv, tokenizer)
    calls = ('\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="f">\n'
             '<｜DSML｜parameter name="x" string="true">y</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>')
    assert supervised_spans(rendered, tokenizer) == [f"need f</think>{calls}{EOS}", f"got r</think>done{EOS}"]
    assert "<result>r</result>\n</function_results>\n\n<think>got r" in rendered.text


def test_v32_trained_turn_before_the_last_user_keeps_its_reasoning(tokenizer: Any) -> None:
    """The official encoding shows reasoning after the last user turn only; a trained earlier turn opens its
    own think block instead of losing its chain of thought, and untrained history renders officially."""
    rendered = get_template("deepseek-v3.2").render_train(two_turns(), tokenizer, thinking=True)
    assert "<｜User｜>Hi<｜Assistant｜><think>Greeting.</think>Hello!" in rendered.text
    conv = two_turns()
    conv.messages[2].loss = False
    rendered = get_template("deepseek-v3.2").render_train(conv, tokenizer, thinking=True)
    assert "<｜User｜>Hi<｜Assistant｜></think>Hello!<｜end▁of▁sentence｜>" in rendered.text


@pytest.mark.parametrize(("name", "between"), [
    ("deepseek-v3", "<｜Assistant｜>"), ("deepseek-r1", "<｜Assistant｜>"), ("deepseek-v4", "<｜Assistant｜></think>"),
    ("deepseek-llm", "Assistant: "), ("deepseek-v3.1", ""), ("deepseek-v3.2", ""),
])
def test_two_assistant_turns_in_a_row_render_as_the_official_template_does(name: str, between: str) -> None:
    # docs/templates.md: V3.1/V3.2 write the second answer right after the first's end-of-sentence token, with no
    # header, as their official templates do; training it teaches text after that token. Pinned so it stays known.
    conv = Conversation([Message("user", "q"), Message("assistant", "a1"), Message("assistant", "a2")])
    text = get_template(name).render_prompt(conv, add_generation_prompt=False)
    assert text.endswith(f"a1<｜end▁of▁sentence｜>{between}a2<｜end▁of▁sentence｜>")
    assert get_template(name).heads_every_assistant_turn == bool(between)  # what training warns by
