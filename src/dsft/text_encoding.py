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
