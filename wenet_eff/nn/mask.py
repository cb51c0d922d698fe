"""Padding, causal and chunk masks. Convention: True marks a position that may be attended."""

from __future__ import annotations

import torch


def make_pad_mask(lengths: torch.Tensor, max_len: int = 0) -> torch.Tensor:
    """True at padded positions.

    Args:
        lengths: (B,) valid lengths.
        max_len: width of the mask; 0 means lengths.max().
    Returns:
        (B, max_len) bool.
    """
    max_len = max_len if max_len > 0 else int(lengths.max().item())
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def subsequent_mask(size: int, device: torch.device | None = None) -> torch.Tensor:
    """Causal mask for decoders: (size, size) bool, row i may see columns 0..i."""
    return torch.ones(size, size, device=device, dtype=torch.bool).tril()


def subsequent_chunk_mask(
    size: int, chunk_size: int, num_left_chunks: int = -1, device: torch.device | None = None
) -> torch.Tensor:
    """Chunk mask for streaming encoders.

    Frame i sees every frame of its own chunk and of `num_left_chunks` chunks before it
    (all earlier chunks when negative).

    Returns:
        (size, size) bool.
    """
    chunk = torch.arange(size, device=device) // chunk_size
    row, col = chunk.unsqueeze(1), chunk.unsqueeze(0)
    visible = col <= row
    if num_left_chunks >= 0:
        visible &= col >= row - num_left_chunks
    return visible


def add_optional_chunk_mask(
    xs: torch.Tensor,
    masks: torch.Tensor,
    use_dynamic_chunk: bool,
    use_dynamic_left_chunk: bool,
    decoding_chunk_size: int,
    static_chunk_size: int,
    num_decoding_left_chunks: int,
    training: bool,
    max_chunk_size: int = 25,
) -> torch.Tensor:
    """The encoder's attention mask, chunked as WeNet does.

    A dynamic-chunk model uses `decoding_chunk_size` (> 0: that chunk, < 0: full context); with
    0 it draws a random chunk per batch in training (full context with probability ~1/2, else
    1..max_chunk_size frames, optionally a random number of left chunks), and uses full context
    in evaluation (WeNet draws there too; a deterministic cv loss is more useful). A static-chunk
    model always uses its chunk. Other models ignore the chunk arguments (full context).

    Args:
        xs: (B, T, D) encoder input after subsampling.
        masks: (B, 1, T) padding mask.
        max_chunk_size: upper bound of random chunks (WeNet: 100 / subsampling rate).
    Returns:
        (B, T, T) chunk mask, or `masks` (B, 1, T) for full context.
    """
    max_len = xs.size(1)
    if use_dynamic_chunk:
        if decoding_chunk_size > 0:
            chunk_size, num_left = decoding_chunk_size, num_decoding_left_chunks
        elif decoding_chunk_size < 0 or not training:
            return masks
        else:
            chunk_size, num_left = int(torch.randint(1, max(max_len, 2), (1,)).item()), -1
            if chunk_size > max_len // 2:
                return masks
            chunk_size = chunk_size % max_chunk_size + 1
            if use_dynamic_left_chunk:
                max_left_chunks = (max_len - 1) // chunk_size
                num_left = int(torch.randint(0, max(max_left_chunks, 1), (1,)).item())
    elif static_chunk_size > 0:
        chunk_size, num_left = static_chunk_size, num_decoding_left_chunks
    else:
        return masks
    chunk_masks = subsequent_chunk_mask(max_len, chunk_size, num_left, xs.device)
    return masks & chunk_masks.unsqueeze(0)
