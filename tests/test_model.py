import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

import wenet_eff
from tests.tiny import tiny_model
from tests.wenet.reference import u2pp_conformer_layout
from wenet_eff.model import IGNORE_ID, add_sos_eos, reverse_pad_list
from wenet_eff.nn.label_smoothing import LabelSmoothingLoss


def _write_cmvn(path: Path, dim: int = 80) -> None:
    path.write_text(json.dumps({"mean_stat": [1.0] * dim, "var_stat": [2.0] * dim, "frame_num": 1}))


def test_u2pp_conformer_matches_wenet_layout(tmp_path):
    wenet = u2pp_conformer_layout()
    reference, total = wenet["state_dict"], wenet["total_parameters"]
    assert sum(math.prod(v) for k, v in reference.items() if k not in wenet["buffers"]) == total
    _write_cmvn(tmp_path / "global_cmvn")
    cfg = wenet_eff.load_config(
        "u2pp_conformer", ["model.vocab_size=5002", f"cmvn.file={tmp_path / 'global_cmvn'}"]
    )
    model = wenet_eff.build_model(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == reference
    assert list(ours) == list(reference)  # WeNet's registration order too
    assert model.num_params()["total"] == total
    # a checkpoint with exactly these keys loads strictly into a fresh model
    clone = wenet_eff.build_model(cfg)
    clone.load_state_dict(model.state_dict(), strict=True)


def test_add_sos_eos_and_reverse():
    ys = torch.tensor([[5, 6, 7], [8, IGNORE_ID, IGNORE_ID]])
    ys_in, ys_out = add_sos_eos(ys, sos=11, eos=11)
    assert ys_in.tolist() == [[11, 5, 6, 7], [11, 8, 11, 11]]
    assert ys_out.tolist() == [[5, 6, 7, 11], [8, 11, -1, -1]]
    rev = reverse_pad_list(ys, torch.tensor([3, 1]))
    assert rev.tolist() == [[7, 6, 5], [8, -1, -1]]


def test_label_smoothing_equals_explicit_kl():
    torch.manual_seed(1)
    vocab, smoothing = 9, 0.1
    logits = torch.randn(3, 5, vocab)
    target = torch.randint(0, vocab, (3, 5))
    target[1, 3:] = IGNORE_ID
    for normalize in (False, True):
        loss = LabelSmoothingLoss(vocab, IGNORE_ID, smoothing, normalize)(logits, target)
        flat, tgt = logits.view(-1, vocab), target.view(-1)
        keep = tgt != IGNORE_ID
        dist = torch.full((int(keep.sum()), vocab), smoothing / (vocab - 1))
        dist.scatter_(1, tgt[keep].unsqueeze(1), 1 - smoothing)
        kl = F.kl_div(F.log_softmax(flat[keep], -1), dist, reduction="sum")
        expected = kl / (keep.sum() if normalize else 3)
        assert torch.allclose(loss, expected, atol=1e-5)


def test_loss_is_weighted_sum_and_decreases_on_a_tiny_batch():
    model = tiny_model().train()
    torch.manual_seed(0)
    speech = torch.randn(2, 60, 80)
    lens = torch.tensor([60, 44])
    text = torch.tensor([[3, 4, 5, 6], [7, 8, IGNORE_ID, IGNORE_ID]])
    text_lens = torch.tensor([4, 2])
    out = model(speech, lens, text, text_lens)
    w = model.ctc_weight
    assert torch.allclose(out["loss"], w * out["loss_ctc"] + (1 - w) * out["loss_att"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = out["loss"].item()
    for _ in range(40):
        opt.zero_grad()
        loss = model(speech, lens, text, text_lens)["loss"]
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_ctc_only_and_attention_only_weights():
    speech, lens = torch.randn(1, 40, 80), torch.tensor([40])
    text, text_lens = torch.tensor([[3, 4]]), torch.tensor([2])
    ctc_only = tiny_model("model.ctc_weight=1.0")(speech, lens, text, text_lens)
    assert ctc_only["loss_att"] is None and torch.equal(ctc_only["loss"], ctc_only["loss_ctc"])
    att_only = tiny_model("model.ctc_weight=0.0")(speech, lens, text, text_lens)
    assert att_only["loss_ctc"] is None and torch.equal(att_only["loss"], att_only["loss_att"])


def test_unknown_config_key_names_the_key():
    import pytest

    with pytest.raises(ValueError, match="outptu_size"):
        wenet_eff.load_config("mini", ["model.encoder.outptu_size=3"])
    with pytest.raises(ValueError, match="no_such_model"):
        wenet_eff.load_config("no_such_model")


def test_unused_parameter_flag_follows_the_loss_weights():
    assert not tiny_model().may_leave_parameters_unused()
    assert tiny_model("model.reverse_weight=0.0").may_leave_parameters_unused()
    assert tiny_model("model.ctc_weight=1.0").may_leave_parameters_unused()
