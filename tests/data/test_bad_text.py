"""Bad text in, clear error or counted skip out: a non-UTF-8 line in every text file a run
reads (an error naming the file and line; a shard's text member is skipped as `bad_text`, as
its other bad members are), and transcripts too long for CTC to align to their audio
(skipped as `ctc_infeasible`)."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from functools import partial

import pytest
import torch
from omegaconf import OmegaConf

from tests.tiny import tiny_model
from wenet_eff.config import resolve_vocab_size
from wenet_eff.data.dataset import Dataset
from wenet_eff.data.features import compute_fbank
from wenet_eff.data.sources import read_data_list, read_shard_list
from wenet_eff.data.tokenizer import read_non_lang_syms, read_units
from wenet_eff.nn.subsampling import subsampled_frames

LATIN1_E = "\xe9".encode("latin-1")  # "é" in Latin-1: byte 0xe9, not UTF-8 on its own


def _units_vocab(path):
    cfg = OmegaConf.create({"model": {"vocab_size": 0}, "tokenizer": {"units": str(path)}})
    return resolve_vocab_size(cfg)


# reader, a good first line, a second line with a Latin-1 byte
READERS = {
    "data.list": (
        read_data_list,
        json.dumps({"key": "a", "wav": "a.wav", "txt": "cafe"}).encode(),
        b'{"key": "b", "wav": "b.wav", "txt": "caf' + LATIN1_E + b'"}',
    ),
    "shard list": (read_shard_list, b"a.tar", b"caf" + LATIN1_E + b".tar"),
    "units.txt": (read_units, b"<blank> 0", b"caf" + LATIN1_E + b" 1"),
    "units.txt (vocab size)": (_units_vocab, b"<blank> 0", b"caf" + LATIN1_E + b" 1"),
    "non_lang_syms": (read_non_lang_syms, b"<noise>", b"<caf" + LATIN1_E + b">"),
}


@pytest.mark.parametrize("name", READERS)
def test_a_non_utf8_line_names_the_file_and_line(tmp_path, name):
    reader, good, bad = READERS[name]
    path = tmp_path / "file.txt"
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(ValueError) as info:
        reader(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: not UTF-8 (byte 0xe9 at byte ")
    assert "convert the file to UTF-8" in message


def test_a_shard_text_member_that_is_not_utf8_is_skipped_and_counted(corpus, make_cfg):
    shard = corpus.root / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for entry, txt in zip(corpus.entries[:2], [b"the fox", b"caf" + LATIN1_E], strict=True):
            for name, data in (("txt", txt), ("wav", open(entry["wav"], "rb").read())):
                info = tarfile.TarInfo(f"{entry['key']}.{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    shard_list = corpus.root / "shards.list"
    shard_list.write_text(f"{shard}\n")
    ds = Dataset(make_cfg(data_type="shard"), shard_list, corpus.tokenizer, train=False)
    batches = list(ds.iterate())
    assert [k for b in batches for k in b["keys"]] == [corpus.keys[0]]
    assert sum((Counter(b["skipped"]) for b in batches), Counter()) == {"bad_text": 1}


@pytest.mark.parametrize("train", [False, True])
def test_transcripts_ctc_cannot_align_are_skipped_and_counted(corpus, tone, make_cfg, train):
    """A 0.3 s clip has 28 fbank frames, 6 encoder frames after 4x subsampling: CTC aligns at
    most 6 labels to it, fewer where a label repeats (a blank must separate the two)."""
    frames = subsampled_frames("conv2d", 28)
    tone(corpus.root / "clip.wav", 0.3)
    wav = str(corpus.root / "clip.wav")
    texts = {
        "fits": "a lazy",  # A ▁ L A Z Y: 6 labels
        "repeats_fit": "a zoo",  # A ▁ Z O O: 5 labels + 1 repeat
        "too_long": "the quick brown fox",
        "repeats_too_long": "a oooo",  # A ▁ O O O O: 6 labels + 3 repeats
    }
    entries = [{"key": k, "wav": wav, "txt": t} for k, t in texts.items()]
    ctc_frames = partial(subsampled_frames, "conv2d")
    ds = Dataset(
        make_cfg(), corpus.write_list(entries), corpus.tokenizer, train, ctc_frames=ctc_frames
    )
    batches = list(ds.iterate())
    assert sorted(k for b in batches for k in b["keys"]) == ["fits", "repeats_fit"]
    assert sum((Counter(b["skipped"]) for b in batches), Counter()) == {"ctc_infeasible": 2}
    # the model's encoder gives the clip exactly the frames the check counted
    assert frames == 6
    feats = compute_fbank(torch.zeros(4800).numpy(), 16000, 80, 25, 10)
    assert feats.shape[0] == 28
    model = tiny_model("model.encoder.input_layer=conv2d")
    out, mask = model.encoder(feats.unsqueeze(0), torch.tensor([28]))
    assert out.shape[1] == int(mask.sum()) == frames
