"""Show a rendered example so a human can check the mask: supervised text highlighted, counts.

Used by ``dsft template render`` and ``dsft data inspect``:

>>> from dsft.templates.base import Rendered
>>> r = Rendered([0, 5, 6, 1], [False, False, True, True], spans=[("<bos>Q:", False), (" A.<eos>", True)])
>>> token_counts(r)
{'tokens': 4, 'supervised': 2, 'unsupervised': 2}
>>> format_rendered(r).plain
'<bos>Q: A.<eos>'
"""

from __future__ import annotations

from typing import Any

from dsft.templates.base import Rendered

SUPERVISED_STYLE = "bold black on green"
CONTEXT_STYLE = "dim"


def _runs(rendered: Rendered, tokenizer: Any) -> list[tuple[str, bool]]:
    """(text, supervised) runs: the render's own spans, else decoded from the ids run by run
    (decoding whole runs, not single tokens, keeps multi-byte characters intact)."""
    if rendered.spans:
        return list(rendered.spans)
    if tokenizer is None:
        raise ValueError("format_rendered needs the tokenizer when the Rendered has no text spans")
    runs: list[tuple[list[int], bool]] = []
    for token, sup in zip(rendered.input_ids, rendered.supervised):
        if runs and runs[-1][1] == sup:
            runs[-1][0].append(token)
        else:
            runs.append(([token], sup))
    return [(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False), sup)
            for ids, sup in runs]


def format_rendered(rendered: Rendered, tokenizer: Any = None, brackets: bool = False) -> Any:
    """A ``rich.text.Text`` of the rendered example: supervised text highlighted, context dimmed.

    ``brackets`` also wraps supervised text in ``⟦ ⟧``, for output without colour (pipes, logs).
    """
    from rich.text import Text

    text = Text()
    for piece, sup in _runs(rendered, tokenizer):
        if brackets and sup:
            piece = f"⟦{piece}⟧"
        text.append(piece, style=SUPERVISED_STYLE if sup else CONTEXT_STYLE)
    return text


def token_counts(rendered: Rendered) -> dict[str, int]:
    """``tokens``, ``supervised`` and ``unsupervised`` token counts of a rendered example."""
    supervised = rendered.num_supervised
    return {"tokens": len(rendered.input_ids), "supervised": supervised,
            "unsupervised": len(rendered.input_ids) - supervised}


def print_rendered(rendered: Rendered, tokenizer: Any = None, console: Any = None) -> None:
    """Print the highlighted example and a one-line legend with the counts."""
    from rich.console import Console

    console = console or Console()
    plain = not console.is_terminal  # no colour: mark supervised text with brackets instead
    console.print(format_rendered(rendered, tokenizer, brackets=plain), soft_wrap=True, highlight=False, markup=False)
    counts = token_counts(rendered)
    legend = "⟦supervised⟧" if plain else f"[{SUPERVISED_STYLE}] supervised [/]"
    console.print(
        f"\n{legend} {counts['supervised']} tokens   [{CONTEXT_STYLE}]context[/] {counts['unsupervised']} tokens   "
        f"total {counts['tokens']}",
        highlight=False,
    )


def token_pieces(rendered: Rendered, tokenizer: Any) -> list[tuple[str, bool, bool]]:
    """``(text, supervised, special)`` for each token of a rendered example, for a per-token view.

    Tokens that decode only together (a multi-byte character split across tokens) form one piece, flagged
    supervised if its first token is. ``special`` marks the tokenizer's special and added special tokens
    (BOS, EOS, role markers), which a text view would otherwise hide or blur into the text.
    """
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    special |= {i for i, t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items()
                if getattr(t, "special", False)}
    pieces: list[tuple[str, bool, bool]] = []
    pending: list[int] = []
    flags: list[bool] = []
    for token, sup in zip(rendered.input_ids, rendered.supervised):
        pending.append(token)
        flags.append(sup)
        text = tokenizer.decode(pending, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and len(pending) < 4:
            continue  # an incomplete UTF-8 sequence: the next token completes it
        pieces.append((text, flags[0], any(t in special for t in pending)))
        pending, flags = [], []
    if pending:
        text = tokenizer.decode(pending, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        pieces.append((text, flags[0], any(t in special for t in pending)))
    return pieces
