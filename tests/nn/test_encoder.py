import pytest
import torch

from tests.tiny import tiny_model


@pytest.mark.parametrize(
    "layer,rate", [("conv2d", 4), ("conv2d6", 6), ("conv2d8", 8), ("dwconv2d", 4)]
)
def test_subsampling_lengths(layer, rate):
    model = tiny_model(f"model.encoder.input_layer={layer}")
    xs = torch.randn(2, 100, 80)
    out, mask = model.encoder(xs, torch.tensor([100, 57]))
    embed = model.encoder.embed
    assert embed.subsampling_rate == rate
    assert embed.right_context == {4: 6, 6: 10, 8: 14}[rate]
    expected_t = out.size(1)
    assert mask.shape == (2, 1, expected_t)
    # valid outputs of a length-n input: frames whose receptive field starts inside it
    for b, n in enumerate((100, 57)):
        assert int(mask[b].sum()) == (n - embed.right_context - 1) // rate + 1


def test_padding_does_not_change_outputs():
    model = tiny_model()
    xs = torch.randn(2, 120, 80)
    lens = torch.tensor([120, 70])
    out, mask = model.encoder(xs, lens)
    alone, _ = model.encoder(xs[1:, :70], lens[1:])
    n = int(mask[1].sum())
    assert torch.allclose(out[1, :n], alone[0, :n], atol=1e-5)


# 263 input frames: 65 encoder frames, more than 2 + 1 chunks of 16 (the left-2 cache is cut)
# and a last, shorter chunk for every size
@pytest.mark.parametrize("left", [-1, 1, 2])
@pytest.mark.parametrize("chunk", [1, 4, 8, 16])
def test_chunk_by_chunk_equals_masked_full_forward(chunk, left):
    model = tiny_model("model.encoder.causal=true", "model.encoder.use_dynamic_chunk=true")
    xs = torch.randn(1, 263, 80)
    with torch.inference_mode():
        full, _ = model.encoder(xs, torch.tensor([263]), chunk, left)
        streamed, _ = model.encoder.forward_chunk_by_chunk(xs, chunk, left)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() <= 1e-5


def test_forward_chunk_defaults_start_a_stream_with_wenets_cache_layouts():
    """Called without caches, forward_chunk starts a stream: the caches it returns have
    WeNet's layouts and carry the stream on exactly as forward_chunk_by_chunk does."""
    model = tiny_model("model.encoder.causal=true", "model.encoder.use_dynamic_chunk=true")
    enc, chunk, left = model.encoder, 4, 2
    xs = torch.randn(1, 263, 80)
    sub, context = enc.embed.subsampling_rate, enc.embed.right_context + 1
    window = (chunk - 1) * sub + context
    with torch.inference_mode():
        expected, _ = enc.forward_chunk_by_chunk(xs, chunk, left)
        out, att, cnn = enc.forward_chunk(xs[:, :window], 0, chunk * left)
        # (elayers, head, cache_t, d_k * 2) and (elayers, batch, hidden, kernel - 1)
        assert att.shape == (2, 2, chunk, 32)
        assert cnn.shape == (2, 1, 32, 4)
        outs, offset = [out], out.size(1)
        for start in range(chunk * sub, xs.size(1) - context + 1, chunk * sub):
            out, att, cnn = enc.forward_chunk(
                xs[:, start : start + window], offset, chunk * left, att, cnn
            )
            outs.append(out)
            offset += out.size(1)
    assert torch.equal(torch.cat(outs, dim=1), expected)


def test_batch_norm_option_tracks_statistics_in_training_only():
    model = tiny_model("model.encoder.cnn_module_norm=batch_norm")
    norm = model.encoder.encoders[0].conv_module.norm
    assert "encoder.encoders.0.conv_module.norm.running_mean" in model.state_dict()
    xs, lens = torch.randn(2, 40, 80), torch.tensor([40, 30])
    before = norm.running_mean.clone()
    model.encoder(xs, lens)  # eval: statistics frozen
    assert torch.equal(norm.running_mean, before)
    model.train()
    model.encoder(xs, lens)
    assert not torch.equal(norm.running_mean, before)


def test_separable_front_end_is_cheaper_with_the_same_frame_rate():
    full = tiny_model("model.encoder.output_size=64")
    separable = tiny_model("model.encoder.output_size=64", "model.encoder.input_layer=dwconv2d")
    count = lambda m: sum(p.numel() for p in m.encoder.embed.conv.parameters())  # noqa: E731
    assert count(separable) < count(full) / 4
    xs, lens = torch.randn(1, 50, 80), torch.tensor([50])
    assert full.encoder(xs, lens)[0].shape == separable.encoder(xs, lens)[0].shape


@pytest.mark.parametrize("cached", [None, 0, 5])
def test_attention_cache_holds_keys_then_values_after_the_cached_ones(cached):
    """The cache is (B, H, T_cache, 2 d_k): keys then values; k and v continue it."""
    from wenet_eff.nn.attention import MultiHeadedAttention

    k, v = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    cache = torch.zeros(0, 0, 0, 0) if cached is None else torch.randn(2, 3, cached, 10)
    k2, v2, new = MultiHeadedAttention._with_cache(k, v, cache)
    old_k = k if cached is None else torch.cat([cache[..., :5], k], dim=2)
    old_v = v if cached is None else torch.cat([cache[..., 5:], v], dim=2)
    assert torch.equal(k2, old_k) and torch.equal(v2, old_v)
    assert torch.equal(new, torch.cat([old_k, old_v], dim=-1))
