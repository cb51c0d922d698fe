"""A WeNet experiment with WeNet's current dictionary layout (`<sos/eos> 2`: the reference
model made by WeNet's code) fine-tunes for 20 updates with WeNet's train.py command line and
decodes through the C++ runtime with the transcripts of the eager model, in every runtime mode.

The fine-tuning data is synthetic noise (its words are in the model's units.txt); the decoded
audio is recorded speech, on which the barely fine-tuned random model still emits tokens (on
the noise it learns to emit blanks, which would make the comparison empty).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import yaml

from tests.train.helpers import check, run_train, write_corpus
from tests.wenet.reference import reference
from wenet_eff.bin import export as export_cli
from wenet_eff.data.tokenizer import build_tokenizer
from wenet_eff.decode.search import decode_batch
from wenet_eff.model import load_model

MODES = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring")
BEAM, CTC_WEIGHT, REVERSE_WEIGHT = 10, 0.3, 0.3
ASTERISK = Path("/usr/share/asterisk/sounds/en")
PROMPTS = ["hello-world", "vm-goodbye", "agent-pass", "conf-onlyperson", "vm-intro"]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> Path:
    """The sos2 experiment fine-tuned for 20 updates (lr 1e-5) on a synthetic corpus whose
    lowercase words are in its units.txt (WeNet tokenizes text as it is)."""
    wenet = reference("wenet_vectors", "sos2")
    root = tmp_path_factory.mktemp("wenet_sos2")
    corpus = write_corpus(root / "data", 16)
    exp = root / "exp"
    settings = ["train.max_steps 20", "optim.lr 0.00001", "optim.warmup_steps 5",
                "data.batch_size 4", "data.dither 0.0", "train.log_interval 5"]  # fmt: skip
    args = ["--config", str(wenet / "train.yaml"), "--data_type", "raw",
            "--train_data", str(corpus.train_list), "--cv_data", str(corpus.cv_list),
            "--model_dir", str(exp), "--checkpoint", str(wenet / "final.pt"),
            "--num_workers", "0"]  # fmt: skip
    check(run_train([*args, *[a for s in settings for a in ("--override_config", s)]]))
    return exp


def _speech() -> list[np.ndarray]:
    """Recorded prompts (asterisk-core-sounds-en-wav) at 16 kHz."""
    if not (ASTERISK / "hello-world.wav").exists():
        pytest.skip(f"{ASTERISK} missing: install asterisk-core-sounds-en-wav")
    wavs = []
    for name in PROMPTS:
        wav, rate = sf.read(ASTERISK / f"{name}.wav", dtype="float32")
        wavs.append(soxr.resample(wav, rate, 16000).astype(np.float32))
    return wavs


@pytest.mark.heavy
def test_finetuned_wenet_sos2_experiment_decodes_in_cpp_as_eager(runtime, finetuned, tmp_path):
    exp, wavs = finetuned, _speech()
    assert yaml.safe_load((exp / "4.yaml").read_text())["step"] == 20
    saved = yaml.safe_load((exp / "train.yaml").read_text())
    assert saved["tokenizer"]["special_tokens"] == {
        "<blank>": 0,
        "<unk>": 1,
        "<sos>": 2,
        "<eos>": 2,
    }
    cfg, model = load_model(exp / "train.yaml", exp / "final.pt")
    wenet = torch.load(reference("wenet_vectors", "sos2", "final.pt"))
    assert not torch.equal(model.state_dict()["ctc.ctc_lo.weight"], wenet["ctc.ctc_lo.weight"])
    out = tmp_path / "runtime"
    export_cli.main(
        ["--config", str(exp / "train.yaml"), "--checkpoint", str(exp / "final.pt"),
         "--out_dir", str(out), "--chunk_size", "-1", "--pieces", "encoder_full", "decoder",
         "--formats", "pt2", "--jobs", "2"]
    )  # fmt: skip
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["blank"], meta["sos"], meta["eos"]) == (0, 2, 2)
    tokenizer = build_tokenizer(cfg.tokenizer)
    cpp_model = runtime.Model(str(out))
    for mode in MODES:
        cpp = runtime.Decoder(
            cpp_model, chunk_size=-1, mode=mode, beam_size=BEAM, ctc_weight=CTC_WEIGHT,
            reverse_weight=REVERSE_WEIGHT,
        )  # fmt: skip
        got = [cpp.decode(w) for w in wavs]
        eager = []
        with torch.inference_mode():
            for wav in wavs:  # the runtime's own features, so only the graphs differ
                feats = torch.from_numpy(runtime.fbank(wav, 16000)).unsqueeze(0)
                enc, mask = model.encoder(feats, torch.tensor([feats.size(1)]))
                hyp = decode_batch(model, [mode], enc, mask, BEAM, CTC_WEIGHT, REVERSE_WEIGHT)
                eager.append(hyp[mode][0].tokens)
        assert [r["tokens"] for r in got] == eager, mode
        assert [r["text"] for r in got] == [tokenizer.detokenize(t)[0] for t in eager], mode
        assert all(r["text"] for r in got), mode
