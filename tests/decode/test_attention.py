import torch
import torch.nn.functional as F

from tests.tiny import tiny_model
from wenet_eff.decode.attention import attention_beam_search, attention_rescoring
from wenet_eff.decode.ctc import Hypothesis


def _teacher_forced_score(model, memory, mask, tokens, decoder):
    """Reference: one sequence at a time, no padding, no cache."""
    ys_in = torch.tensor([[model.sos, *tokens]])
    logits = decoder(memory, mask, ys_in, torch.tensor([len(tokens) + 1]))
    logp = F.log_softmax(logits, -1)[0].detach()
    return float(sum(logp[i, t] for i, t in enumerate([*tokens, model.eos])))


def test_rescoring_scores_equal_unbatched_reference():
    model = tiny_model()
    speech = torch.randn(2, 80, 80)
    out, mask = model.encoder(speech, torch.tensor([80, 64]))
    nbest = [
        [Hypothesis([1, 2, 3], -1.0), Hypothesis([4], -2.0), Hypothesis([5, 6], -0.5)],
        [Hypothesis([7, 8, 9, 10], -3.0), Hypothesis([2], -1.5)],
    ]
    rw, cw = 0.3, 0.5
    best = attention_rescoring(model, nbest, out, mask, ctc_weight=cw, reverse_weight=rw)
    for b, hyps in enumerate(nbest):
        mem, m = out[b : b + 1], mask[b : b + 1]
        totals = []
        for h in hyps:
            left = _teacher_forced_score(model, mem, m, h.tokens, model.decoder.left_decoder)
            right = _teacher_forced_score(
                model, mem, m, h.tokens[::-1], model.decoder.right_decoder
            )
            totals.append((1 - rw) * left + rw * right + cw * h.score)
        j = max(range(len(hyps)), key=totals.__getitem__)
        assert best[b].tokens == hyps[j].tokens
        assert abs(best[b].score - totals[j]) < 1e-4


def test_beam_one_attention_search_equals_greedy_full_recompute():
    model = tiny_model()
    speech = torch.randn(2, 60, 80)
    out, mask = model.encoder(speech, torch.tensor([60, 48]))
    hyps = attention_beam_search(model, out, mask, beam_size=1)
    max_len = int(mask.sum(-1).max())  # the search runs the batch's longest encoder length
    for b in range(2):
        seq = [model.sos]
        for _ in range(max_len):
            logits = model.decoder.left_decoder(
                out[b : b + 1], mask[b : b + 1], torch.tensor([seq]), torch.tensor([len(seq)])
            )
            nxt = int(logits[0, -1].argmax())
            if nxt == model.eos:
                break
            seq.append(nxt)
        assert hyps[b].tokens == seq[1:]


def test_decode_all_methods_shapes():
    model = tiny_model()
    speech = torch.randn(3, 70, 80)
    lens = torch.tensor([70, 50, 30])
    methods = ["ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring"]
    results = model.decode(methods, speech, lens, beam_size=3, ctc_weight=0.3, reverse_weight=0.3)
    assert set(results) == set(methods)
    for method, hyps in results.items():
        assert len(hyps) == 3
        for h in hyps:
            assert all(0 <= t < model.vocab_size for t in h.tokens)
            if method.startswith("ctc"):
                assert 0 not in h.tokens  # blanks never reach a CTC hypothesis
