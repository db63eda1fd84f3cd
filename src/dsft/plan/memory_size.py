"""The memory sizes ``dsft plan`` takes (``--gpu-mem``, ``--host-mem``): GiB as a bare number, or a number with
its unit as people write it (``24GB``, ``80GiB``, ``512g``, ``24000MiB``).

Both are memory sizes, and memory is sold in powers of two: a GPU sold as "24 GB" (an RTX 3090; nvidia-smi: 24576MiB)
and a host sold with "128 GB" of RAM hold 24 and 128 GiB. So GB, G, MB, M, TB and T are read as memory makers mean
them (JEDEC's units: 2^30, 2^20, 2^40 bytes), like GiB, MiB and TiB: ``24GB`` is 24 GiB. Read as 10^9 bytes, the
"24GB" a 3090's owner writes would plan for 22.35 GiB, 1.6 GiB less than the card holds.
"""

from __future__ import annotations

import re
from decimal import Decimal

from dsft.errors import DsftError

GIB = 1024**3  # bytes

# The largest size taken, in GiB (a pebibyte): far above any machine, finite in bytes.
MAX_MEMORY_GIB = 2**20

# Bytes per unit, by the unit's spelling in lower case ('' : a bare number, GiB).
UNIT_BYTES: dict[str, int] = {
    "": GIB, "gib": GIB, "gb": GIB, "g": GIB,
    "mib": 1024**2, "mb": 1024**2, "m": 1024**2,
    "tib": 1024**4, "tb": 1024**4, "t": 1024**4,
}

# A number as float() writes it (1e3, .5, inf), then letters: the unit. ASCII: \d would match a full-width ８.
_SIZE = re.compile(r"\s*([+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan))\s*([a-z]*)\s*",
                   re.IGNORECASE | re.ASCII)


def memory_gib(flag: str, text: str) -> float:
    """``text`` (a ``flag``'s value) in GiB, converted exactly from its unit; a :class:`DsftError` naming the flag
    for anything else, or for a size not above 0 or above :data:`MAX_MEMORY_GIB`.

    >>> memory_gib("--gpu-mem", "24"), memory_gib("--gpu-mem", "24GiB"), memory_gib("--gpu-mem", "24gb")
    (24.0, 24.0, 24.0)
    >>> memory_gib("--host-mem", "512 G"), memory_gib("--gpu-mem", "24576MiB"), memory_gib("--gpu-mem", "24000MB")
    (512.0, 24.0, 23.4375)
    >>> memory_gib("--gpu-mem", "24GBs")
    Traceback (most recent call last):
    dsft.errors.DsftError: --gpu-mem: '24GBs' is not a memory size; write GiB as a number (24) or with a unit: 24GiB, 24GB, 24576MiB, 24576MB
    """
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    number = Decimal(match.group(1)) if match and unit in UNIT_BYTES else None  # exact: 1.1GB is 1.1 x 2^30 bytes
    if number is None:
        raise DsftError(f"{flag}: {text!r} is not a memory size; write GiB as a number (24) or with a unit: 24GiB, "
                        "24GB, 24576MiB, 24576MB")
    # Bounded above too: inf (or 1e300, inf once in bytes) failed converting to an integer byte count.
    if not (number.is_finite() and 0 < number * UNIT_BYTES[unit] <= MAX_MEMORY_GIB * GIB):
        raise DsftError(f"{flag}: must be > 0 and at most {MAX_MEMORY_GIB:,} GiB, got {text.strip()}")
    return float(number * UNIT_BYTES[unit] / GIB) if UNIT_BYTES[unit] != GIB else float(number)
