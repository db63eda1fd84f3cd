"""What a file that is not UTF-8 is, when that is clear, for the one message that refuses it.

A root module (below every layer): configs, data files, messages files and predictions files all name the
encoding the same way.
"""

from __future__ import annotations

import re

_CJK = re.compile("[\u4e00-\u9fff]")


def encoding_hint(raw: bytes) -> str:
    """What bytes that are not UTF-8 are, when that is clear: UTF-16 (a byte-order mark: Windows Notepad's
    "Unicode"), or GBK/GB18030 Chinese (a Chinese-locale Windows editor's or Excel's save); else nothing.

    >>> encoding_hint("发热".encode("gb18030"))
    '; it reads as GBK/GB18030 Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)'
    >>> encoding_hint("question".encode("utf-16"))
    '; it is UTF-16 text (byte-order mark FF FE): save the file as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8 IN > OUT)'
    >>> encoding_hint("café".encode("latin-1"))  # Latin-1, not Chinese
    ''
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return (f"; it is UTF-16 text (byte-order mark {raw[0]:02X} {raw[1]:02X}): save the file as UTF-8 "
                "(e.g. iconv -f UTF-16 -t UTF-8 IN > OUT)")
    try:
        text = raw.decode("gb18030")
    except UnicodeDecodeError:
        return ""
    if not _CJK.search(text):
        return ""
    return "; it reads as GBK/GB18030 Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)"


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
    """
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        family, how = "UTF-32", f"byte-order mark {' '.join(f'{b:02X}' for b in head[:4])}"
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        family, how = "UTF-16", f"byte-order mark {head[0]:02X} {head[1]:02X}"
    elif b"\x00" in head:
        wide = 4 if head.count(0) * 4 >= len(head) * 3 * 0.8 else 2  # ASCII: 3 NULs in 4 bytes, or 1 in 2
        units = [head[i:i + wide] for i in range(0, len(head) - wide + 1, wide)]
        little = sum(1 for u in units if u[0] and not u[-1]) >= sum(1 for u in units if u[-1] and not u[0])
        family = f"UTF-{wide * 8}{'LE' if little else 'BE'}"
        return (f"; it reads as {family} text (NUL bytes between its characters, no byte-order mark): save the file "
                f"as UTF-8 (e.g. iconv -f {family} -t UTF-8 IN > OUT)")
    else:
        return ""
    return f"; it is {family} text ({how}): save the file as UTF-8 (e.g. iconv -f {family} -t UTF-8 IN > OUT)"
