"""Cleaning steps: each returns kept + removed-with-reason and never mutates its input."""

import random

from dsft.data.clean import (
    balance_classes, exact_dedup, filter_by_length, normalize_unicode, strip_html,
)
from dsft.data.conversation import Conversation, Message
from dsft.data.near_dedup import near_dedup, near_duplicate_groups
from dsft.data.relevance import check_contamination, drop_contaminated, filter_by_relevance
from dsft.data.tokens import count_tokens, token_lengths


def conv(question: str, answer: str, origin: str = "f:1", **meta: object) -> Conversation:
    return Conversation([Message("user", question), Message("assistant", answer)], meta={"origin": origin, **meta})


def test_strip_html_unescapes_keeps_think_and_removes_emptied() -> None:
    rows = [conv("<b>Depth</b> &amp; width?", "<p>12&nbsp;m</p>"), conv("<br/>", "x", "f:2")]
    result = strip_html(rows)
    # A closing </p> separates blocks; it must not leave a trailing newline in the supervised answer.
    assert [m.content for m in result.kept[0].messages] == ["Depth & width?", "12\xa0m"]
    assert [r.reason for r in result.removed] == ["messages[0] empty after HTML stripping"]
    assert rows[0].messages[0].content == "<b>Depth</b> &amp; width?"  # input untouched
    kept_think = strip_html([Conversation([Message("user", "q"), Message("assistant", "a", reasoning="<i>r</i>")])])
    assert kept_think.kept[0].messages[1].reasoning == "r"


def test_a_rewrite_that_empties_reasoning_removes_the_record() -> None:
    """Validation refuses empty reasoning; reasoning a rewrite leaves empty must not slip past it (it trained an
    empty think block: thinking mode for V3.1/V3.2/V4, whose turns with reasoning train in it)."""
    def with_reasoning(reasoning: str) -> Conversation:
        return Conversation([Message("user", "q"), Message("assistant", "a", reasoning=reasoning)], meta={"origin": "f:1"})

    assert [r.reason for r in strip_html([with_reasoning("<p></p>")]).removed] == \
        ["messages[1].reasoning_content empty after HTML stripping"]
    assert [r.reason for r in normalize_unicode([with_reasoning("\x07\x08")]).removed] == \
        ["messages[1].reasoning_content empty after Unicode normalisation"]
    assert normalize_unicode([conv("q", "\u200dok")]).kept  # a joiner beside text is text


def test_strip_html_drops_script_style_and_comments_and_keeps_paragraph_breaks() -> None:
    page = ("<style>p {color: red}</style><p>First</p>\n\n<p>Second</p><script type='x'>alert('hi')</script>"
            "<!-- note -->")
    [row] = strip_html([conv("<div>q</div>", page)]).kept
    assert row.messages[1].content == "First\n\nSecond"


def test_normalize_unicode_nfkc_controls_and_chinese_punctuation() -> None:
    [row] = normalize_unicode([conv("ＡＢＣ１２３\x00？", "水库，建成。\r\n")]).kept
    assert row.messages[0].content == "ABC123？"
    assert row.messages[1].content == "水库，建成。\n"
    removed = normalize_unicode([conv("\x07\x08", "a")]).removed
    assert removed[0].reason == "messages[0] empty after Unicode normalisation"


def test_the_chinese_ellipsis_is_kept() -> None:
    """NFKC writes U+2026 as three ASCII dots: the medical data's "提示……" was trained as "提示......", so the tuned
    model wrote an ellipsis no source text has (guide 002's Complex_CoT)."""
    [row] = normalize_unicode([conv("然后呢……", "ST段抬高提示透壁性心肌缺血……")]).kept
    assert row.messages[0].content == "然后呢……"
    assert row.messages[1].content == "ST段抬高提示透壁性心肌缺血……"


def test_exact_dedup_ignores_case_and_spacing_but_not_reasoning() -> None:
    a, b, c = conv("Hi  there", "Yo", "f:1"), conv("hi there", "yo", "f:2"), conv("Hi there", "Yo", "f:3")
    c.messages[1].reasoning = "think"
    result = exact_dedup([a, b, c])
    assert result.kept == [a, c]
    assert [r.reason for r in result.removed] == ["exact duplicate of f:1"]


def test_copies_that_train_different_turns_are_not_duplicates() -> None:
    """One conversation given once per turn, each copy with loss on one turn (every turn trained on exactly its
    inference prompt): deduplication removed every copy but the first, so only the first turn was trained."""
    def copy(trained: int, origin: str) -> Conversation:
        turns = [Message("user", "q1"), Message("assistant", "a1"), Message("user", "q2"), Message("assistant", "a2")]
        for index in (1, 3):
            turns[index].loss = index == trained
        return Conversation(turns, meta={"origin": origin})

    copies = [copy(1, "f:1"), copy(3, "f:2"), copy(3, "f:3")]
    assert [c.meta["origin"] for c in exact_dedup(copies).kept] == ["f:1", "f:2"]
    assert [c.meta["origin"] for c in near_dedup(copies, 0.85).kept] == ["f:1", "f:2"]


def test_near_dedup_chinese_and_english() -> None:
    base_zh = "青山水库于1958年10月建成，总库容1234万立方米，是当地最重要的灌溉水源之一，也承担防洪任务。"
    base_en = "The Qingshan Reservoir was completed in October 1958 and is the main source of irrigation water."
    rows = [conv(base_zh, "好", "f:1"), conv(base_zh.replace("1234", "1235"), "好", "f:2"),
            conv(base_en, "ok", "f:3"), conv(base_en + "!", "ok", "f:4"), conv("完全不同的问题", "别的", "f:5")]
    result = near_dedup(rows, threshold=0.7)  # one changed digit: true Jaccard of 5-shingles ~0.8
    assert [c.meta["origin"] for c in result.kept] == ["f:1", "f:3", "f:5"]
    assert result.removed[0].reason.startswith("near-duplicate (Jaccard ~") and result.removed[0].reason.endswith("of f:1")
    strict = near_dedup(rows, threshold=1.0)
    assert len(strict.kept) == 5


def test_near_duplicate_groups_are_transitive_and_deterministic() -> None:
    texts = ["a b c d e f g h i j k l m n", "a b c d e f g h i j k l m N", "zzzz yyyy", "a b c d e f g h i j k l m n"]
    groups = near_duplicate_groups(texts, 0.7)
    assert groups == near_duplicate_groups(texts, 0.7)
    assert groups[0] == groups[1] == groups[3] != groups[2]


def test_length_filters_total_and_per_role(tokenizer) -> None:
    rows = [conv("short", "ok"), conv("a " * 50, "ok", "f:2"), conv("q", "answer " * 40, "f:3")]
    tokens = count_tokens(rows, tokenizer)
    assert [t.total for t in tokens] == [sum(token_lengths([c.messages[0].content, c.messages[1].content], tokenizer)) for c in rows]
    result = filter_by_length(rows, tokens, min_tokens=3, max_tokens=45, max_tokens_per_role={"assistant": 30})
    assert result.kept == []
    reasons = [r.reason for r in result.removed]
    assert reasons[0].endswith("< min_tokens 3")
    assert reasons[1].endswith("> max_tokens 45")
    assert reasons[2].startswith("assistant turns have") and reasons[2].endswith("max_tokens_per_role.assistant 30")


def test_balance_under_and_over_are_seeded() -> None:
    rows = [conv(f"q{i}", "a", f"f:{i}", domain="big" if i < 6 else "small") for i in range(8)]
    rows.append(conv("q9", "a", "f:9"))  # no domain: its own class "(missing)"
    under, added = balance_classes(rows, "domain", "under", seed=3)
    assert added == [] and len(under.kept) == 3 and len(under.removed) == 6
    assert under.kept == balance_classes(rows, "domain", "under", seed=3)[0].kept
    assert "undersampled class domain=big to 1" in under.removed[0].reason
    over, copies = balance_classes(rows, "domain", "over", seed=3)
    assert over.kept == rows and over.removed == [] and len(copies) == 4 + 5
    counts = {}
    for row in over.kept + copies:
        counts[row.meta.get("domain")] = counts.get(row.meta.get("domain"), 0) + 1
    assert counts == {"big": 6, "small": 6, None: 6}


def test_relevance_filter_keeps_in_domain_text() -> None:
    references = ["reservoir capacity water storage dam irrigation", "水库 库容 灌溉 防洪"]
    rows = [conv("What is the reservoir capacity?", "Large water storage."), conv("水库库容多少？", "很大。", "f:2"),
            conv("Best pizza topping?", "Pineapple, obviously.", "f:3")]
    result = filter_by_relevance(rows, references, min_score=0.1)
    assert [c.meta["origin"] for c in result.kept] == ["f:1", "f:2"]
    assert result.removed[0].reason.startswith("TF-IDF relevance")


def test_contamination_report_and_drop_ignores_boilerplate() -> None:
    leak = "the quick brown fox jumps over the lazy dog near the old mill by the river"
    evaluation = [conv(leak, "yes", "val:1")] + [conv(f"template prefix shared by all of the eval questions number {i}", "a", f"val:{i + 2}") for i in range(3)]
    train = [conv(leak.upper(), "no", "t:1"), conv("unrelated words only here", "b", "t:2"),
             conv("template prefix shared by all of the eval questions number 99", "c", "t:3")]
    report = check_contamination(train, evaluation, ngram=8)
    assert [c.meta["origin"] for c, _ in report.contaminated] == ["t:1"]
    assert "val:1" in report.contaminated[0][1]
    result = drop_contaminated(train, report)
    assert [c.meta["origin"] for c in result.kept] == ["t:2", "t:3"] and result.removed[0].reason.startswith("contaminated")


def test_token_lengths_multiprocess_equals_in_process(tokenizer, monkeypatch) -> None:
    from dsft.data import tokens as tokens_module

    rng = random.Random(0)
    texts = ["".join(rng.choice("ab 水库cd,。") for _ in range(rng.randint(0, 40))) for _ in range(300)]
    single = token_lengths(texts, tokenizer, num_proc=1)
    monkeypatch.setattr(tokens_module, "_MULTIPROCESS_MIN_TEXTS", 10)
    assert token_lengths(texts, tokenizer, num_proc=2) == single
    assert single == [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def test_parallel_signatures_equal_sequential(monkeypatch) -> None:
    from dsft.data import near_dedup as module

    texts = [f"document {i} " + "水库" * (i % 7) + "words " * (i % 11) for i in range(60)]
    hasher = module.MinHasher()
    sequential = module.compute_signatures(texts, hasher, processes=1)
    monkeypatch.setattr(module, "_PARALLEL_MIN_TEXTS", 10)
    monkeypatch.setattr(module, "_SIGNATURE_CHUNK", 7)
    assert (module.compute_signatures(texts, hasher, processes=2) == sequential).all()
    assert sequential.shape == (60, module.DEFAULT_NUM_PERM)


def test_batched_contamination_matches_a_naive_check(monkeypatch) -> None:
    """The vectorised batch pass equals a plain n-gram set intersection (short docs, boundaries, boilerplate)."""
    from dsft.data import relevance

    rng = random.Random(0)
    vocab = ["a", "b", "c", "水", "库"]

    def doc(i: int, size: int) -> Conversation:
        return conv(" ".join(rng.choice(vocab) for _ in range(size)), "x", f"d:{i}")

    n = 4
    evaluation = [doc(i, rng.randint(1, 8)) for i in range(6)]
    train = [doc(100 + i, rng.randint(0, 9)) for i in range(300)]

    def grams(c: Conversation) -> set:
        tokens = relevance.units(relevance.conversation_text(c))
        return {tuple(tokens)} if 0 < len(tokens) < n else {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}

    spread: dict = {}
    for c in evaluation:
        for g in grams(c):
            spread[g] = spread.get(g, 0) + 1
    known = {g for g, count in spread.items() if count < 2}
    expected = [c.meta["origin"] for c in train if grams(c) & known]
    monkeypatch.setattr(relevance, "_BATCH_DOCUMENTS", 37)  # several batches
    report = relevance.check_contamination(train, evaluation, ngram=n)
    assert [c.meta["origin"] for c, _ in report.contaminated] == expected
    assert 0 < len(expected) < len(train)  # the data exercises hits and misses
