import pytest
import torch

from tests.tiny import tiny_model


@pytest.mark.parametrize("pre_norm", [True, False])
def test_incremental_steps_equal_full_forward(pre_norm):
    model = tiny_model(f"model.decoder.normalize_before={str(pre_norm).lower()}")
    decoder = model.decoder.left_decoder
    memory = torch.randn(2, 9, 32)
    memory_mask = torch.ones(2, 1, 9, dtype=torch.bool)
    memory_mask[1, :, 6:] = False
    tokens = torch.tensor([[11, 3, 4, 5, 6], [11, 7, 8, 9, 2]])
    logits = decoder(memory, memory_mask, tokens, torch.tensor([5, 5]))
    cache = None
    for i in range(1, 6):
        logp, cache = decoder.forward_one_step(memory, memory_mask, tokens[:, :i], cache)
        expected = logits[:, i - 1].log_softmax(-1)
        assert torch.allclose(logp, expected, atol=1e-5)


def test_right_decoder_is_skipped_without_reverse_weight():
    model = tiny_model()
    memory, mask = torch.randn(1, 5, 32), torch.ones(1, 1, 5, dtype=torch.bool)
    ys = torch.tensor([[11, 3, 4]])
    left, right = model.decoder(memory, mask, ys, torch.tensor([3]), ys, reverse_weight=0.0)
    assert right is None and left.shape == (1, 3, 12)


def test_shared_memory_equals_repeated_memory():
    """Memory of batch G serving B/G consecutive sequences (folded into the query length in
    the source attention) gives what the memory repeated per sequence gives."""
    model = tiny_model()
    decoder = model.decoder.left_decoder
    memory = torch.randn(2, 9, 32)
    memory_mask = torch.ones(2, 1, 9, dtype=torch.bool)
    memory_mask[1, :, 5:] = False
    tokens = torch.randint(1, 11, (6, 4))
    lens = torch.tensor([4, 2, 3, 4, 1, 3])
    repeated = memory.repeat_interleave(3, 0), memory_mask.repeat_interleave(3, 0)
    expected = decoder(*repeated, tokens, lens)
    assert torch.allclose(decoder(memory, memory_mask, tokens, lens), expected, atol=1e-5)
    got, _ = decoder.forward_one_step(memory, memory_mask, tokens)
    want, _ = decoder.forward_one_step(*repeated, tokens)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="not a multiple of the key batch 4"):
        decoder(memory.repeat(2, 1, 1), memory_mask.repeat(2, 1, 1), tokens, lens)
