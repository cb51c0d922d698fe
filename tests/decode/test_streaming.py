import numpy as np
import pytest
import torch

from tests.tiny import tiny_model
from wenet_eff.data.features import compute_fbank
from wenet_eff.decode.ctc import CtcPrefixBeam, ctc_prefix_beam_search
from wenet_eff.decode.lm import WordLmFusion, train_kneser_ney
from wenet_eff.decode.streaming import (
    EndpointConfig,
    EndpointRule,
    StreamingSession,
    decode_stream,
)

STREAMING = ("model.encoder.causal=true", "model.encoder.use_dynamic_chunk=true")
MOE = ("model/ffn=moe", "model.encoder.n_expert=4", "model.decoder.n_expert=4")
SR = 16000


def _wav(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a few loud tonal bursts: features that vary over time."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    wav = 0.05 * rng.standard_normal(n)
    for start in np.arange(0.2, seconds, 0.7):
        burst = (t >= start) & (t < start + 0.3)
        wav[burst] += 0.5 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t[burst])
    return wav.astype(np.float32)


def _pieces(wav: np.ndarray, size: int):
    return [wav[i : i + size] for i in range(0, len(wav), size)]


def _model(*overrides):
    torch.manual_seed(0)
    model = tiny_model(*STREAMING, *overrides)
    # make the CTC head confident enough that the beam holds real tokens
    torch.nn.init.normal_(model.ctc.ctc_lo.weight, std=0.3)
    return model


def _offline(model, wav, chunk, left, beam, lm=None):
    feats = compute_fbank(wav, SR).unsqueeze(0)
    lens = torch.tensor([feats.size(1)])
    with torch.inference_mode():
        out, mask = model.encoder(feats, lens, chunk, left)
        log_probs = model.ctc.log_softmax(out)[0]
        results = model.decode(
            ["ctc_prefix_beam_search", "attention_rescoring"],
            feats,
            lens,
            beam_size=beam,
            decoding_chunk_size=chunk,
            num_decoding_left_chunks=left,
            ctc_weight=0.3,
            reverse_weight=0.5,
            lm=lm,
        )
    return out, log_probs, results


@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
@pytest.mark.parametrize("left", [-1, 2])
@pytest.mark.parametrize("chunk", [1, 4, 8, 16])
def test_session_equals_offline_decoding_with_the_same_chunk_mask(chunk, left, moe):
    model = _model(*(MOE if moe else ()))
    wav = _wav(3.3, seed=chunk)
    session = StreamingSession(
        model, chunk_size=chunk, num_left_chunks=left, beam_size=4, ctc_weight=0.3,
        reverse_weight=0.5, endpoint=EndpointConfig(rules=[]),
    )  # fmt: skip
    for piece in _pieces(wav, 1600):  # 100 ms
        session.accept_waveform(piece)
    final = session.finalize()
    out, log_probs, results = _offline(model, wav, chunk, left, beam=4)
    assert session.encoder_out().shape == out.shape
    assert (session.encoder_out() - out).abs().max() <= 1e-5
    assert (session.ctc_log_probs() - log_probs).abs().max() <= 1e-5
    assert session.nbest()[0].tokens == results["ctc_prefix_beam_search"][0].tokens
    assert final.final and final.tokens == results["attention_rescoring"][0].tokens
    assert final.frames == out.size(1)


def test_session_with_a_word_lm_equals_offline_decoding_with_it():
    model = _model()
    # every fourth token starts a word; words are spelt with the letters A-H
    pieces = [(t % 4 == 0, "ABCDEFGH"[t % 8]) for t in range(model.vocab_size)]
    lm = train_kneser_ney([["AB", "CD"], ["EFG", "AB"], ["H"]], 2)
    fusion = WordLmFusion(lm, pieces, weight=1.0, word_bonus=0.5)
    wav = _wav(3.3, seed=5)
    session = StreamingSession(
        model, chunk_size=4, beam_size=4, ctc_weight=0.3, reverse_weight=0.5,
        endpoint=EndpointConfig(rules=[]), lm=fusion,
    )  # fmt: skip
    for piece in _pieces(wav, 1600):
        session.accept_waveform(piece)
    final = session.finalize()
    _, _, results = _offline(model, wav, 4, -1, beam=4, lm=fusion)
    best = session.nbest()[0]
    assert best.tokens == results["ctc_prefix_beam_search"][0].tokens
    assert best.score == pytest.approx(results["ctc_prefix_beam_search"][0].score, abs=1e-4)
    assert best.extras["lm"] != 0.0 and best.score != pytest.approx(best.extras["ctc"])
    assert final.tokens == results["attention_rescoring"][0].tokens


def test_partial_results_grow_as_chunks_complete():
    model = _model()
    wav = _wav(4.0)
    session = StreamingSession(model, chunk_size=4, beam_size=4)
    frames, partials = [], []
    for piece in _pieces(wav, 1234):  # pieces need not align with frames or chunks
        result = session.accept_waveform(piece)
        frames.append(result.frames)
        partials.append(result.tokens)
    assert frames == sorted(frames) and frames[0] == 0 and frames[-1] > 0
    assert all(f % 4 == 0 for f in frames)  # only whole chunks are decoded before finalize
    assert len(partials[-1]) > 0
    assert len(result.token_frames) == len(result.tokens)
    assert result.token_frames == sorted(result.token_frames)
    assert all(0 <= f < result.frames for f in result.token_frames)
    # the partial of a prefix of the audio is the prefix beam of the frames so far
    assert session.nbest()[0].tokens == partials[-1]


def test_full_context_session_equals_offline_full_forward():
    model = tiny_model("model.encoder.causal=false")  # symmetric convolution: full context only
    wav = _wav(2.5, seed=3)
    session = StreamingSession(model, chunk_size=-1, beam_size=4)
    for piece in _pieces(wav, 1600):
        assert session.accept_waveform(piece).frames == 0  # no partials without chunks
    final = session.finalize()
    _, log_probs, results = _offline(model, wav, -1, -1, beam=4)
    assert (session.ctc_log_probs() - log_probs).abs().max() <= 1e-5
    assert final.tokens == results["attention_rescoring"][0].tokens


def test_reset_starts_a_new_utterance_with_the_same_result():
    model = _model()
    wav = _wav(2.0, seed=5)
    session = StreamingSession(model, chunk_size=8, beam_size=4)
    first = [session.accept_waveform(p) for p in _pieces(wav, 800)][-1]
    first_final = session.finalize()
    with pytest.raises(RuntimeError, match="reset"):
        session.accept_waveform(wav[:100])
    session.reset()
    again = [session.accept_waveform(p) for p in _pieces(wav, 3000)][-1]
    assert again.tokens == first.tokens
    assert session.finalize().tokens == first_final.tokens


def _biased(token: int):
    """A model whose CTC head always outputs `token` (0: blank, i.e. silence)."""
    model = _model()
    with torch.no_grad():
        model.ctc.ctc_lo.weight.zero_()
        model.ctc.ctc_lo.bias.fill_(-10.0)
        model.ctc.ctc_lo.bias[token] = 10.0
    return model


def test_endpoint_rules():
    rule = EndpointRule(must_decode=True, min_trailing_silence=1.0, min_utterance_length=2.0)
    assert rule.fires(decoded=True, trailing_silence=1.0, utterance_length=2.0)
    assert not rule.fires(decoded=False, trailing_silence=1.0, utterance_length=2.0)
    assert not rule.fires(decoded=True, trailing_silence=0.9, utterance_length=2.0)
    assert not rule.fires(decoded=True, trailing_silence=1.0, utterance_length=1.9)


def test_silence_endpoint_after_five_seconds_without_speech():
    session = StreamingSession(_biased(0), chunk_size=4, beam_size=2)  # default rules
    ends = []
    for piece in _pieces(_wav(6.0), 1600):
        ends.append(session.accept_waveform(piece).endpoint)
    first = ends.index(True)
    assert 4.9 <= (first + 1) * 0.1 <= 5.5  # rule 1 at 5 s (+ the chunk and lookahead delay)
    assert session.finalize().tokens == []


def test_length_endpoint_when_speech_never_stops():
    rules = [EndpointRule(must_decode=True, min_trailing_silence=0.0, min_utterance_length=2.0)]
    session = StreamingSession(_biased(3), chunk_size=4, endpoint=EndpointConfig(rules=rules))
    ends = [session.accept_waveform(p).endpoint for p in _pieces(_wav(3.0), 1600)]
    assert not any(ends[:18]) and ends[-1]
    assert session.finalize().tokens == [3]  # one token repeated = one label


def test_decode_stream_splits_at_endpoints():
    rules = [EndpointRule(must_decode=False, min_trailing_silence=1.5)]
    session = StreamingSession(_biased(0), chunk_size=4, endpoint=EndpointConfig(rules=rules))
    results = list(decode_stream(session, _pieces(_wav(4.0), 1600)))
    finals = [r for r in results if r.final]
    assert len(finals) == 3  # at ~1.5 s, ~3 s, and the rest at the end
    assert not session.has_input()


def test_bad_input_is_refused_clearly():
    session = StreamingSession(_model(), chunk_size=4)
    with pytest.raises(ValueError, match="8000 Hz.*16000 Hz"):
        session.accept_waveform(np.zeros(800, np.float32), sample_rate=8000)
    with pytest.raises(ValueError, match="1-D"):
        session.accept_waveform(np.zeros((2, 800), np.float32))
    with pytest.raises(ValueError, match="causal"):
        StreamingSession(tiny_model("model.encoder.causal=false"), chunk_size=4)
    # int16 samples are taken as they are
    wav = _wav(1.0)
    session.accept_waveform((wav * 32767).astype(np.int16))
    assert session.has_input()


def test_incremental_prefix_beam_equals_whole_utterance_search():
    torch.manual_seed(0)
    log_probs = torch.randn(57, 7).log_softmax(-1)
    whole = ctc_prefix_beam_search(log_probs, beam_size=5)
    search = CtcPrefixBeam(beam_size=5)
    for piece in torch.split(log_probs, [1, 10, 3, 20, 23]):
        search.advance(piece)
    assert [h.tokens for h in search.nbest()] == [h.tokens for h in whole]
    assert [h.score for h in search.nbest()] == pytest.approx([h.score for h in whole])
