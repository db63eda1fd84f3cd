"""Tool calls read back out of a reply are exactly the calls the family's writer rendered (round trip through
every family that writes tool calls), and a cut-off or malformed block stays content."""

from __future__ import annotations

import json

import pytest

from dsft.data.conversation import Conversation, Message
from dsft.markers import EOS
from dsft.templates.reasoning import split_reasoning
from dsft.templates.registry import all_families
from dsft.templates.tool_call_parsing import parse_dsml, parse_v3, parse_v31

WRITERS = [f for f in all_families() if f.tool_call_format not in ("none", "model")]

CALL_SETS = [
    [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}],
    [{"name": "lookup", "arguments": {"q": "水库 completion\nmonth", "filters": {"year": [1958, 1960]}, "exact": True}},
     {"name": "now", "arguments": {}}],
]


def openai(calls: list[dict]) -> list[dict]:
    return [{"type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"],
                                                                                         ensure_ascii=False)}}
            for c in calls]


def reply_text(family, content: str, calls: list[dict]) -> str:
    """The answer part of what the model is taught to generate for this turn (its training target, EOS
    removed, reasoning split off as the server splits it)."""
    conv = Conversation([Message("user", "Plan my trip."), Message("assistant", content, tool_calls=openai(calls))])
    segments = family.segments(conv, frozenset({1}), False, False)
    target = "".join(s.text for s in segments if s.target)
    assert target.endswith(EOS), family.name
    generated = target[:-len(EOS)]
    prompt = family.render_prompt(Conversation(conv.messages[:1]), thinking=False)
    if family.prompt_opens_think(prompt):
        return split_reasoning(generated)[1] or ""
    return generated


def test_every_family_that_writes_calls_reads_them_back() -> None:
    assert {f.tool_call_format for f in WRITERS} == {"deepseek-v3", "deepseek-v3.1", "dsml"}


@pytest.mark.parametrize("family", WRITERS, ids=lambda f: f.name)
@pytest.mark.parametrize("calls", CALL_SETS, ids=["one", "two"])
def test_round_trip(family, calls: list[dict]) -> None:
    text = reply_text(family, "Let me check.", calls)
    content, parsed = family.parse_tool_calls(text)
    assert content.strip() == "Let me check."
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed] == \
        [(c["name"], c["arguments"]) for c in calls]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in parsed)
    assert len({c["id"] for c in parsed}) == len(parsed)


@pytest.mark.parametrize("family", WRITERS, ids=lambda f: f.name)
def test_a_cut_off_or_absent_block_stays_content(family) -> None:
    text = reply_text(family, "Let me check.", CALL_SETS[1])
    for cut in (len(text) - 5, len(text) // 2 + 10):
        assert family.parse_tool_calls(text[:cut]) == (text[:cut], [])
    assert family.parse_tool_calls("Paris is sunny.") == ("Paris is sunny.", [])


def test_malformed_blocks_stay_content() -> None:
    v3 = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```"
          "<｜tool▁call▁end｜>junk<｜tool▁calls▁end｜>")
    assert parse_v3(v3) == (v3, [])
    v31 = "<｜tool▁calls▁begin｜>f<｜tool▁sep｜>{}<｜tool▁calls▁end｜>"  # no call markers
    assert parse_v31(v31) == (v31, [])
    dsml = ('\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="f">\n'
            '<｜DSML｜parameter name="n" string="false">not json</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
            '</｜DSML｜function_calls>')
    assert parse_dsml(dsml) == (dsml, [])


def test_families_without_a_format_never_parse() -> None:
    text = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    for family in all_families():
        if family.tool_call_format == "none":
            assert family.parse_tool_calls(text) == (text, [])
