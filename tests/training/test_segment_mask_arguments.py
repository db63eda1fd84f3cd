"""transformers' mask preprocessing for ``dsft_segments``: the packed-row ids without a read back to the host
(on a GPU that read waits for the previous micro-batch's whole backward, once per forward)."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, masking_utils

from dsft.training.segment_attention import SEGMENT_ATTENTION, packed_sequence_ids

from host_reads import HostReads

PACKED = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])  # three examples in one row


def _config(attention: str, sliding_window: int | None = None) -> Qwen2Config:
    config = Qwen2Config(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, use_sliding_window=sliding_window is not None,
                         sliding_window=sliding_window, max_window_layers=0)
    config._attn_implementation = attention
    return config


def _embeds(positions: torch.Tensor) -> torch.Tensor:
    return torch.zeros(positions.shape[0], positions.shape[1], 8)


def test_packed_sequence_ids_number_the_examples_of_a_row() -> None:
    assert packed_sequence_ids(PACKED).tolist() == [[0, 0, 0, 1, 1, 2, 2, 2, 2]]
    assert packed_sequence_ids(torch.arange(5)[None]).tolist() == [[0] * 5]


def test_a_packed_row_gets_no_mask_and_nothing_is_read_back() -> None:
    for positions in (PACKED, torch.arange(9)[None]):
        with HostReads() as reads:
            mask = masking_utils.create_causal_mask(_config(SEGMENT_ATTENTION), _embeds(positions), None, None,
                                                    position_ids=positions)
        assert mask is None and reads.names == []
    # The control: transformers' own check reads the answer back (sdpa keeps it).
    with HostReads() as reads:
        masking_utils.create_causal_mask(_config("sdpa"), _embeds(PACKED), None, None, position_ids=PACKED)
    assert "__bool__" in reads.names


@pytest.mark.parametrize("positions", [PACKED, torch.arange(9)[None], PACKED.expand(2, -1)])
def test_a_sliding_window_mask_is_the_one_sdpa_gets(positions: torch.Tensor) -> None:
    """Where transformers does build the mask (here under a sliding window, for the sdpa fallback), the packed
    rows are masked as they are for sdpa: no attention across examples."""
    mine = masking_utils.create_sliding_window_causal_mask(_config(SEGMENT_ATTENTION, 3), _embeds(positions), None,
                                                           None, position_ids=positions)
    reference = masking_utils.create_sliding_window_causal_mask(_config("sdpa", 3), _embeds(positions), None,
                                                                None, position_ids=positions)
    assert mine is not None and reference is not None
    torch.testing.assert_close(mine, reference)


def test_other_attention_implementations_keep_transformers_preprocessing() -> None:
    with HostReads() as reads:
        masking_utils.create_causal_mask(_config("eager"), _embeds(PACKED), None, None, position_ids=PACKED)
    assert "__bool__" in reads.names
