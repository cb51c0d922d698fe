"""Decoding on CUDA gives the CPU's hypotheses in all four modes; chunk-by-chunk streaming
equals the masked full forward there, and the streaming session runs on a CUDA model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.gpu.helpers import CUDA, MOE, batch, twins
from wenet_eff.decode.streaming import StreamingSession
from wenet_eff.model import DECODE_METHODS

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("ffn", ["dense", "moe"])
@pytest.mark.parametrize("chunk", [-1, 4])
@torch.inference_mode()
def test_four_decoding_modes_match_the_cpu(ffn, chunk):
    cpu, cuda = twins(*(MOE if ffn == "moe" else ()))
    feats, lens, _, _ = batch()
    kwargs = dict(beam_size=4, decoding_chunk_size=chunk, ctc_weight=0.3, reverse_weight=0.3)
    expected = cpu.decode(list(DECODE_METHODS), feats, lens, **kwargs)
    got = cuda.decode(list(DECODE_METHODS), feats.to(CUDA), lens.to(CUDA), **kwargs)
    for method in DECODE_METHODS:
        assert [h.tokens for h in got[method]] == [h.tokens for h in expected[method]], method


@pytest.mark.parametrize("chunk, left", [(1, -1), (4, 2), (16, -1)])
@torch.inference_mode()
def test_chunk_by_chunk_equals_the_masked_full_forward(chunk, left):
    _, model = twins()
    xs = torch.randn(1, 263, 80, device=CUDA)
    full, _ = model.encoder(xs, torch.tensor([263], device=CUDA), chunk, left)
    streamed, _ = model.encoder.forward_chunk_by_chunk(xs, chunk, left)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() <= 1e-5


def test_streaming_session_on_a_cuda_model_matches_the_cpu():
    cpu, cuda = twins()
    audio = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    results = []
    for model in (cpu, cuda):
        session = StreamingSession(model, chunk_size=4, num_left_chunks=2, beam_size=4)
        for piece in np.array_split(audio, 7):
            session.accept_waveform(piece)
        final = session.finalize()
        results.append((final.tokens, session.encoder_out().cpu()))
    (cpu_tokens, cpu_out), (cuda_tokens, cuda_out) = results
    assert cuda_tokens == cpu_tokens
    torch.testing.assert_close(cuda_out, cpu_out, atol=1e-4, rtol=1e-4)
