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
