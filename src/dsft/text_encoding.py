"""What a file that is not UTF-8 is, when that is clear, for the one message that refuses it; and the half
character a generation cut inside a multi-byte character ends with (:func:`without_cut_character`).

A root module (below every layer): configs, data files, messages files and predictions files all name the
encoding the same way, and evaluation and serving end a generation the same way.
"""

from __future__ import annotations

import re

_CJK = re.compile("[\u4e00-\u9fff]")
# Chinese and Japanese text's characters: CJK punctuation, kana, the ideographs, fullwidth forms (，！？：).
_CHINESE_TEXT = re.compile("[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")


REPLACEMENT_CHAR = "\ufffd"  # what a tokenizer decodes the bytes of an unfinished UTF-8 character to


def without_cut_character(text: str) -> str:
    """``text`` without the U+FFFD a generation ends with when it stopped inside a multi-byte character (the
    token limit reached after the first of a Chinese character's byte tokens): the client would keep a replacement
    character for the half character, never completed. vLLM's detokenizer does not emit it either.

    >>> without_cut_character("北京的历史: 北\ufffd"), without_cut_character("ok")
    ('北京的历史: 北', 'ok')
    """
    return text.rstrip(REPLACEMENT_CHAR)


def not_utf8(raw: bytes) -> str | None:
    """None when ``raw`` is UTF-8 text; else what follows "not UTF-8 text" in a refusal: where it fails and what the
    text is (:func:`encoding_hint`), or that it is UTF-16/32 (which can decode as UTF-8 full of NULs).

    >>> not_utf8("水库".encode()), not_utf8("水库".encode("gb18030"))[:40]
    (None, ' (byte 2); it reads as GBK/GB18030 Chine')
    """
    wide = wide_text_hint(raw[:4096])
    if wide:
        return wide
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f" (byte {exc.start}){encoding_hint(raw)}"
    return None


def encoding_hint(raw: bytes) -> str:
    """What bytes that are not UTF-8 are, when that is clear: UTF-16 or UTF-32 (a byte-order mark: Windows Notepad's
    "Unicode"; or, without one, the NUL bytes beside ASCII characters, :func:`wide_text_hint`), or GBK/GB18030
    Chinese (a Chinese-locale Windows editor's or Excel's save); else nothing.

    >>> encoding_hint("发热".encode("gb18030"))
    '; it reads as GBK/GB18030 Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)'
    >>> encoding_hint("question".encode("utf-16"))
    '; it is UTF-16 text (byte-order mark FF FE): save the file as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8 IN > OUT)'
    >>> encoding_hint("question".encode("utf-32"))  # its mark begins as UTF-16's does
    '; it is UTF-32 text (byte-order mark FF FE 00 00): save the file as UTF-8 (e.g. iconv -f UTF-32 -t UTF-8 IN > OUT)'
    >>> encoding_hint("发热".encode("utf-16-le") + '{"q": "发热"}'.encode("utf-16-le"))[:32]  # not GBK
    '; it reads as UTF-16LE text (NUL'
    >>> encoding_hint("café".encode("latin-1"))  # Latin-1, not Chinese
    ''
    """
    wide = wide_text_hint(raw[:4096]) or _byte_order_mark_hint(raw)
    if wide:
        return wide
    try:
        text = raw.decode("gb18030")
    except UnicodeDecodeError:
        return ""
    if not _CJK.search(text):
        return ""
    return "; it reads as GBK/GB18030 Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)"


# Byte-order marks, UTF-32's first: its little-endian mark begins with UTF-16's.
_BYTE_ORDER_MARKS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                     (b"\xfe\xff", "UTF-16"))


def _byte_order_mark_hint(raw: bytes) -> str:
    """The encoding ``raw``'s byte-order mark names (a UTF-16 or UTF-32 one), read or not as text; else nothing."""
    for mark, family in _BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            return (f"; it is {family} text (byte-order mark {' '.join(f'{b:02X}' for b in mark)}): save the file as "
                    f"UTF-8 (e.g. iconv -f {family} -t UTF-8 IN > OUT)")
    return ""


def _family(head: bytes, width: int) -> str:
    """UTF-16 or UTF-32 (``width`` 2 or 4 bytes), little- or big-endian by where the NULs of ASCII characters sit."""
    units = [head[i:i + width] for i in range(0, len(head) - width + 1, width)]
    little = sum(1 for u in units if u[0] and not u[-1]) >= sum(1 for u in units if u[-1] and not u[0])
    return f"UTF-{width * 8}{'LE' if little else 'BE'}"


def _reads_as_text(head: bytes, family: str) -> bool:
    """``head`` decoded as ``family`` (UTF-16LE, ...) reads as a data file's text: not blank, 95% of its characters
    printable, tabs or line breaks (a character cut at the end of the sample counts against it, once), and either
    a quarter of them ASCII (JSON's and CSV's punctuation and keys, even around Chinese text) or, for Chinese or
    Japanese text whose rows outweigh its punctuation (a CSV of long Chinese answers), 90% of them Chinese, Japanese
    or ASCII with 1% ASCII. ASCII bytes read in pairs as UTF-16 make CJK characters, which are printable too, but no ASCII ones:
    in UTF-16/32 an ASCII character holds a NUL byte, which UTF-8 text does not."""
    width = 4 if family.startswith("UTF-32") else 2
    codec = family.replace("UTF", "utf").replace("LE", "-le").replace("BE", "-be")
    text = head[:len(head) - len(head) % width].decode(codec, errors="replace")
    readable = sum(1 for ch in text if (ch.isprintable() and ch != "\ufffd") or ch in "\t\r\n")
    ascii_text = sum(1 for ch in text if ch.isascii() and (ch.isprintable() or ch in "\t\r\n"))
    chinese = len(_CHINESE_TEXT.findall(text))
    structured = ascii_text >= 0.25 * len(text) or (ascii_text >= 0.01 * len(text)
                                                     and chinese + ascii_text >= 0.9 * len(text))
    return bool(text.strip()) and readable >= 0.95 * len(text) and structured


def wide_text_hint(head: bytes) -> str:
    """What the first bytes of a text data file are when they are UTF-16 or UTF-32 (by a byte-order mark, or
    without one by the NUL bytes those encodings put beside every ASCII character, which UTF-8 JSON and CSV
    never hold); else nothing. Such a file cannot be read line by line or split into records at all.

    >>> wide_text_hint('{"a": 1}'.encode("utf-16"))
    '; it is UTF-16 text (byte-order mark FF FE): save the file as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8 IN > OUT)'
    >>> wide_text_hint('{"a": 1}'.encode("utf-16-le"))
    '; it reads as UTF-16LE text (NUL bytes between its characters, no byte-order mark): save the file as UTF-8 \
(e.g. iconv -f UTF-16LE -t UTF-8 IN > OUT)'
    >>> wide_text_hint('{"a": "发热"}'.encode("utf-8")), wide_text_hint("发热".encode("gb18030"))
    ('', '')

    Chinese text whose ASCII is little more than its commas and line breaks (a CSV of long answers) is such text too:

    >>> wide_text_hint(("问题,回答\\n" + "患者发热三天伴咳嗽，应该如何处理？,建议及时就医并查血常规和胸片\\n" * 40).encode("utf-16"))[:42]
    '; it is UTF-16 text (byte-order mark FF FE'

    A byte-order mark before text that does not read so (a damaged first record's bytes FE FF) does not make it so
    either, nor, without a byte-order mark, do NUL bytes alone: a UTF-8 file with a stray NUL in one damaged
    record, or binary junk, is read record by record (each bad record rejected where it is). The bytes must
    decode in the family found to text that reads as a data file's (see :func:`_reads_as_text`), with NULs at
    least a tenth of the bytes (the high byte of every ASCII character):

    >>> wide_text_hint(b'{"a": 1}' + bytes([0]) + b'{"b": 2}'), wide_text_hint(bytes([0, 7, 0, 1, 0, 2, 0, 3]))
    ('', '')
    >>> wide_text_hint(bytes([0xFE, 0xFF]) + b'{"a": 1}')
    ''
    """
    for mark, family in _BYTE_ORDER_MARKS:
        endian = "LE" if mark[0] == 0xFF else "BE"
        if head.startswith(mark) and _reads_as_text(head[len(mark):], family + endian):
            return _byte_order_mark_hint(mark)
    if not (head.count(0) * 10 >= len(head) > 0):  # NULs beside ASCII characters: a tenth of the bytes at least
        return ""
    family = next((f for f in (_family(head, 4), _family(head, 2)) if _reads_as_text(head, f)), "")
    if not family:
        return ""
    return (f"; it reads as {family} text (NUL bytes between its characters, no byte-order mark): save the file "
            f"as UTF-8 (e.g. iconv -f {family} -t UTF-8 IN > OUT)")
