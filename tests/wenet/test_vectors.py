"""WeNet's own outputs reproduced: experiment dirs made by WeNet's code (one per dictionary
layout, `<sos/eos>` at 2 and last, and an MoE model) load strictly and give WeNet's encoder
outputs, CTC posteriors, streaming caches, losses, rescoring and decoding results, within the
tolerances of the vectors' README (encoder, CTC and caches max abs 1e-5 on valid frames; losses
relative 1e-4; decoded tokens identical)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.wenet.reference import LAYOUTS, reference
from wenet_eff.decode.attention import attention_rescoring
from wenet_eff.decode.ctc import Hypothesis, ctc_prefix_beam_search
from wenet_eff.model import DECODE_METHODS, load_model

ENCODER_ATOL = 1e-5
LOSS_RTOL = 1e-4
SCORE_RTOL = 1e-5  # sums of ~60 log probabilities, each within ~1e-6 of WeNet's
# io.pt's encoder runs: name -> (decoding_chunk_size, num_decoding_left_chunks)
CHUNKING = {"full": (-1, -1), "chunk4_left2": (4, 2), "chunk8_leftall": (8, -1)}
FIXED_HYP_CTC_SCORES = (-1.0, -2.5, -4.0)  # the README's fixed hypotheses' CTC scores
WEIGHTS = {"ctc_weight": 0.3, "reverse_weight": 0.3}


@pytest.fixture(scope="module", params=LAYOUTS)
def wenet(request):
    """(expected.json, io.pt, model) of one WeNet experiment dir, loaded with strict=True."""
    exp = reference("wenet_vectors", request.param)
    torch.set_num_threads(1)
    _, model = load_model(exp / "train.yaml", exp / "final.pt")
    expected = json.loads((exp / "expected.json").read_text())
    return expected, torch.load(exp / "io.pt", weights_only=False), model


def _max_abs_valid(ours: torch.Tensor, theirs: torch.Tensor, lens: torch.Tensor) -> float:
    return max(float((ours[b, :n] - theirs[b, :n]).abs().max()) for b, n in enumerate(lens))


def test_checkpoint_and_special_tokens_are_wenets(wenet):
    expected, io, model = wenet
    assert (model.sos, model.eos, model.special.blank) == (io["sos"], io["eos"], 0)
    assert (model.sos, model.eos, model.vocab_size) == (
        expected["sos"],
        expected["eos"],
        expected["vocab"],
    )
    assert model.num_params()["total"] == expected["parameters"]
    assert len(model.state_dict()) == expected["state_dict_entries"]


@pytest.mark.parametrize("name", CHUNKING)
@torch.no_grad()
def test_encoder_and_ctc_match_wenet(wenet, name):
    _, io, model = wenet
    out, mask = model.encoder(io["speech"], io["speech_lengths"], *CHUNKING[name])
    lens = mask.squeeze(1).sum(1)
    assert torch.equal(lens, io[f"enc_{name}_lens"])
    assert _max_abs_valid(out, io[f"enc_{name}"], lens) <= ENCODER_ATOL
    logp = model.ctc.log_softmax(out)
    assert _max_abs_valid(logp, io[f"ctc_logp_{name}"], lens) <= ENCODER_ATOL


@torch.no_grad()
def test_forward_chunk_outputs_and_caches_match_wenet(wenet):
    _, io, model = wenet
    att_cache, cnn_cache = torch.zeros(0, 0, 0, 0), torch.zeros(0, 0, 0, 0)
    trace = io["forward_chunk_trace_utt0"]
    assert len(trace) == 16
    for step in trace:
        xs = io["speech"][:1, step["frame_start"] : step["frame_end"]]
        y, att_cache, cnn_cache = model.encoder.forward_chunk(
            xs, step["offset"], step["required_cache_size"], att_cache, cnn_cache
        )
        for ours, theirs in ((y, "y"), (att_cache, "att_cache_out"), (cnn_cache, "cnn_cache_out")):
            assert ours.shape == step[theirs].shape, theirs
            assert float((ours - step[theirs]).abs().max()) <= ENCODER_ATOL, theirs


@torch.no_grad()
def test_losses_match_wenet(wenet):
    expected, io, model = wenet
    ours = model(io["speech"], io["speech_lengths"], io["text"], io["text_lengths"])
    for key in ("loss", "loss_att", "loss_ctc"):
        theirs = expected["losses"][key]
        assert abs(float(ours[key]) - theirs) <= LOSS_RTOL * abs(theirs), key


@torch.no_grad()
def test_attention_rescoring_of_fixed_hypotheses_matches_wenet(wenet):
    _, io, model = wenet
    out, mask = model.encoder(io["speech"][:2], io["speech_lengths"][:2])
    nbest = [
        [
            Hypothesis(list(h), s)
            for h, s in zip(io["fixed_hyps"], FIXED_HYP_CTC_SCORES, strict=True)
        ]
        for _ in range(2)
    ]
    best = attention_rescoring(model, nbest, out, mask, **WEIGHTS)
    for ours, theirs in zip(best, io["rescoring_fixed_hyps"], strict=True):
        assert ours.tokens == list(theirs["tokens"])
        assert ours.score == pytest.approx(theirs["score"], rel=SCORE_RTOL)


@pytest.mark.parametrize("mode, chunk", [("full", -1), ("chunk4", 4)])
@torch.no_grad()
def test_four_decoding_modes_give_wenets_tokens(wenet, mode, chunk):
    _, io, model = wenet
    speech, lens = io["speech"], io["speech_lengths"]
    results = model.decode(list(DECODE_METHODS), speech, lens, 4, chunk, -1, **WEIGHTS)
    theirs = io["decode"][mode]
    for method in DECODE_METHODS:
        for ours, ref in zip(results[method], theirs[method], strict=True):
            assert ours.tokens == list(ref["tokens"]), method
            if method in ("ctc_prefix_beam_search", "attention_rescoring"):  # WeNet scores these
                assert ours.score == pytest.approx(ref["score"], rel=SCORE_RTOL), method
    # the whole prefix-beam n-best, as WeNet keeps it for rescoring
    out, mask = model.encoder(speech, lens, chunk, -1)
    logp = model.ctc.log_softmax(out)
    for b, ref in enumerate(theirs["ctc_prefix_beam_search"]):
        nbest = ctc_prefix_beam_search(logp[b, : int(mask[b].sum())], 4, model.special.blank)
        assert [h.tokens for h in nbest] == [list(t) for t in ref["nbest"]]
        assert [h.score for h in nbest] == pytest.approx(ref["nbest_scores"], rel=SCORE_RTOL)
