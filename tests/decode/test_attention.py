import pytest
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


def _brute_force_best(model, memory, mask, steps):
    """Reference: score every token sequence the search can end with after `steps` steps (eos
    then nothing more, or `steps` tokens without eos) by one teacher-forced decoder pass."""
    words = [t for t in range(model.vocab_size) if t != model.eos]
    seqs = torch.cartesian_prod(*[torch.tensor(words)] * steps).reshape(-1, steps)
    ys_in = torch.cat([torch.full((len(seqs), 1), model.sos), seqs], dim=1)
    n = len(seqs)
    logits = model.decoder.left_decoder(
        memory.expand(n, -1, -1), mask.expand(n, -1, -1), ys_in, torch.full((n,), steps + 1)
    )
    logp = F.log_softmax(logits, -1)
    prefix = torch.zeros(n)
    best = (-float("inf"), None)
    for k in range(steps + 1):  # k tokens, then eos (k < steps) or the end of the search
        end = logp[:, k, model.eos] if k < steps else torch.zeros(n)
        total = prefix + end
        j = int(total.argmax())
        if float(total[j]) > best[0]:
            best = (float(total[j]), seqs[j, :k].tolist())
        if k < steps:
            prefix = prefix + logp[:, k].gather(1, seqs[:, k : k + 1]).squeeze(1)
    return best


# both cases differ from the greedy (beam 1) result: at scale 1 the best is eos at once, at
# scale 3 three tokens without eos (the search's end)
@pytest.mark.parametrize("scale", [1.0, 3.0])
@torch.no_grad()
def test_attention_search_with_an_unpruned_beam_finds_the_best_sequence(scale):
    """3 encoder frames: the search runs 3 steps; a beam of vocab^2 keeps every prefix of two
    tokens, so its result must be the best of all sequences."""
    torch.manual_seed(0)
    model = tiny_model()
    model.decoder.left_decoder.output_layer.weight.mul_(scale)
    speech = torch.randn(2, 16, 80)
    lens = torch.tensor([16, 16])
    out, mask = model.encoder(speech, lens)
    assert mask.sum(-1).tolist() == [[3], [3]]
    beam = model.vocab_size**2
    hyps = model.decode(["attention"], speech, lens, beam_size=beam)["attention"]
    for b in range(2):
        score, tokens = _brute_force_best(model, out[b : b + 1], mask[b : b + 1], 3)
        assert hyps[b].tokens == tokens
        assert abs(hyps[b].score - score) < 1e-4
