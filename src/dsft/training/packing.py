"""Best-fit-decreasing (BFD) packing of tokenized examples into rows of ``max_len`` tokens.

Packing removes padding: instead of one example per row padded to the longest, each row holds several
whole examples back to back. BFD keeps every example whole (no example is split across rows, so no
example loses its EOS or its context) and fills rows tightly: sort by length, longest first, and put
each example into the open row with the *least* room that still fits it.

Examples longer than ``max_len`` cannot be placed without cutting them. The policy is to **drop** them
(never truncate: cutting removes the EOS the model must learn to emit) and to report how many; see
:func:`overlong_indices`. ``dsft.training.examples`` already drops them when tokenizing a run, so here
they only occur when the function is called directly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class _FirstFitTree:
    """Find the smallest free capacity >= a request in O(log max_len).

    Leaf ``r`` holds ``r`` while at least one open row has exactly ``r`` tokens of room, else 0; inner
    nodes hold the max of their children. The leftmost leaf whose value is >= the request is then the
    smallest capacity that fits, i.e. the best fit.
    """

    def __init__(self, max_len: int) -> None:
        self.size = 1
        while self.size < max_len + 1:
            self.size *= 2
        self.tree = [0] * (2 * self.size)

    def set(self, capacity: int, present: bool) -> None:
        node = capacity + self.size
        self.tree[node] = capacity if present else 0
        node //= 2
        while node:
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])
            node //= 2

    def smallest_at_least(self, need: int) -> int | None:
        if self.tree[1] < need:
            return None
        node = 1
        while node < self.size:
            node = 2 * node if self.tree[2 * node] >= need else 2 * node + 1
        return node - self.size


def overlong_indices(lengths: Sequence[int], max_len: int) -> list[int]:
    """Indices of examples longer than ``max_len`` tokens: :func:`pack_best_fit` drops these.

    >>> overlong_indices([5, 12, 3], max_len=10)
    [1]
    """
    return [i for i, n in enumerate(lengths) if n > max_len]


def pack_best_fit(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Pack example indices into rows of at most ``max_len`` tokens, best-fit decreasing.

    Deterministic: ties in length are taken in index order, ties in room go to the row opened first.
    Examples longer than ``max_len`` (and empty ones) are left out; count them with
    :func:`overlong_indices`. Runs in O(n log n + n log max_len): 100k examples take well under a second.

    Worked example, ``lengths=[5, 3, 8, 2, 6]`` and ``max_len=10``. In decreasing order the examples are
    #2 (8), #4 (6), #0 (5), #1 (3), #3 (2). #2 opens row A (room 2); #4 fits nowhere and opens row B
    (room 4); #0 opens row C (room 5); #1 needs 3: rows with room are A=2, B=4, C=5 and the least room
    that fits is B, which is left with 1; #3 needs 2 and fits A exactly.

    >>> pack_best_fit([5, 3, 8, 2, 6], max_len=10)
    [[2, 3], [4, 1], [0]]
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    order = sorted((i for i, n in enumerate(lengths) if 0 < n <= max_len), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    # rows_with_room[r]: ids of open rows with exactly r tokens of room, oldest first.
    rows_with_room: dict[int, deque[int]] = {}
    tree = _FirstFitTree(max_len)
    for index in order:
        need = lengths[index]
        room = tree.smallest_at_least(need)
        if room is None:
            row_id, room = len(rows), max_len
            rows.append([])
        else:
            bucket = rows_with_room[room]
            row_id = bucket.popleft()
            if not bucket:
                del rows_with_room[room]
                tree.set(room, False)
        rows[row_id].append(index)
        left = room - need
        if left > 0:
            if left not in rows_with_room:
                rows_with_room[left] = deque()
                tree.set(left, True)
            rows_with_room[left].append(row_id)
    return rows


def packing_efficiency(lengths: Sequence[int], rows: list[list[int]], max_len: int) -> float:
    """Share of the ``len(rows) * max_len`` row tokens filled by real tokens (1.0 = no padding).

    >>> packing_efficiency([5, 3, 8, 2, 6], [[2, 3], [4, 1], [0]], max_len=10)
    0.8
    """
    if not rows:
        return 0.0
    return sum(lengths[i] for row in rows for i in row) / (len(rows) * max_len)
