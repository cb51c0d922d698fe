import torch

from wenet_eff.nn.mask import add_optional_chunk_mask, make_pad_mask, subsequent_chunk_mask


def _chunk_mask_reference(size, chunk, left):
    ret = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        start = 0 if left < 0 else max((i // chunk - left) * chunk, 0)
        end = min((i // chunk + 1) * chunk, size)
        ret[i, start:end] = True
    return ret


def test_pad_mask():
    mask = make_pad_mask(torch.tensor([3, 1, 0]), 4)
    expected = torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_chunk_mask_matches_loop_definition():
    for size in (1, 7, 16):
        for chunk in (1, 3, 4, 16):
            for left in (-1, 0, 1, 2):
                assert torch.equal(
                    subsequent_chunk_mask(size, chunk, left),
                    _chunk_mask_reference(size, chunk, left),
                )


def test_optional_chunk_mask_modes():
    xs = torch.zeros(2, 10, 4)
    masks = ~make_pad_mask(torch.tensor([10, 6])).unsqueeze(1)
    full = add_optional_chunk_mask(xs, masks, True, False, -1, 0, -1, training=False)
    assert full is masks
    assert add_optional_chunk_mask(xs, masks, True, False, 0, 0, -1, training=False) is masks
    chunked = add_optional_chunk_mask(xs, masks, True, False, 4, 0, 1, training=False)
    assert chunked.shape == (2, 10, 10)
    assert torch.equal(chunked[0], subsequent_chunk_mask(10, 4, 1))
    assert not chunked[1, :, 6:].any()  # padding stays masked
    # a non-streaming model ignores the decoding chunk; a static-chunk model always uses its own
    assert add_optional_chunk_mask(xs, masks, False, False, 4, 0, 1, training=False) is masks
    static = add_optional_chunk_mask(xs, masks, False, False, -1, 3, -1, training=False)
    assert torch.equal(static[0], subsequent_chunk_mask(10, 3, -1))
    torch.manual_seed(3)
    dynamic = [
        add_optional_chunk_mask(xs, masks, True, True, 0, 0, -1, training=True) for _ in range(20)
    ]
    assert any(d.dim() == 3 and d.size(1) == 10 for d in dynamic)
