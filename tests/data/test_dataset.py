"""Dataset pipeline: every bad-input case is skipped with its reason and key, shards, segments,
resampling, padded batch contents, the trailing skip-report batch, data.list validation."""

import io
import json
import logging
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wenet_eff.data.audio import load_audio
from wenet_eff.data.batching import IGNORE_ID
from wenet_eff.data.dataset import Dataset, build_dataset
from wenet_eff.data.features import compute_fbank
from wenet_eff.data.sources import read_data_list


def run(dataset, **kw) -> tuple[list[dict], list[str], Counter]:
    batches = list(dataset.iterate(**kw))
    keys = [k for b in batches for k in b["keys"]]
    skipped = sum((Counter(b["skipped"]) for b in batches), Counter())
    return batches, keys, skipped


@pytest.mark.parametrize("train", [False, True])
def test_each_bad_input_is_skipped_with_reason_and_key(corpus, tone, make_cfg, caplog, train):
    root = corpus.root
    (root / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    tone(root / "low_sr.wav", 0.5, sr=8000)
    tone(root / "long.wav", 5.0)
    tone(root / "short.wav", 0.05)
    tone(root / "hi_rate.wav", 0.8, sr=48000)
    good = corpus.entries[0]["wav"]
    bad = {
        "missing": ("nope.wav", "the fox", "missing_file"),
        "corrupt": ("corrupt.wav", "the fox", "bad_audio"),
        "empty": ("empty.wav", "the fox", "empty_audio"),
        "no_text": (good, "", "empty_text"),
        "punct_only": (good, " ?! ", "empty_text"),
        "unknown": (good, "the fox 你", "unknown_token" if train else "unknown_token_mapped"),
        "low_sr": ("low_sr.wav", "the fox", "sample_rate_too_low"),
        "long": ("long.wav", "the fox", "too_long"),
        "short": ("short.wav", "the fox", "too_short"),
        "wordy": (good, " ".join(["lazy dog"] * 6), "text_too_long"),
    }
    entries = list(corpus.entries)
    entries.insert(3, {"key": "hi_rate", "wav": str(root / "hi_rate.wav"), "txt": "a dog"})
    for i, (key, (wav, txt, _)) in enumerate(bad.items()):
        entries.insert(2 * i, {"key": key, "wav": str(root / wav), "txt": txt})
    cfg = make_cfg(filter__token_max_length=40, spec_aug=train, speed_perturb=train, dither=1.0)
    ds = Dataset(cfg, str(corpus.write_list(entries)), corpus.tokenizer, train=train)

    with caplog.at_level(logging.INFO):
        batches, keys, skipped = run(ds)

    assert sorted(keys) == sorted([*corpus.keys, "hi_rate", *([] if train else ["unknown"])])
    assert skipped == Counter(reason for _, _, reason in bad.values())
    for key, (_, _, reason) in bad.items():
        # a skip warns; a kept utterance's note (unknown_token_mapped) is logged at INFO
        level = logging.INFO if reason == "unknown_token_mapped" else logging.WARNING
        assert any(
            key in r.getMessage() and reason in r.getMessage() and r.levelno == level
            for r in caplog.records
        ), (key, reason)
    for b in batches:
        assert len(b["keys"]) > 0 or b is batches[-1]


@pytest.mark.parametrize("train", [False, True])
def test_unknown_tokens_are_unk_in_decoding_and_skipped_in_training(corpus, make_cfg, train):
    tok = corpus.tokenizer
    entry = dict(corpus.entries[0], txt="The 你 fox")
    ds = Dataset(make_cfg(), str(corpus.write_list([entry])), tok, train=train)
    (batch,) = list(ds.iterate())
    if train:
        assert batch["keys"] == [] and batch["skipped"] == {"unknown_token": 1}
        return
    assert batch["keys"] == [entry["key"]] and batch["skipped"] == {"unknown_token_mapped": 1}
    space = tok.symbol_table["▁"]
    expected = tok.tokenize("the")[1] + [space, tok.unk_id, space] + tok.tokenize("fox")[1]
    assert batch["target"][0].tolist() == expected


def test_resampled_utterance_has_target_rate_frames(corpus, tone, make_cfg):
    tone(corpus.root / "hi_rate.wav", 0.8, sr=48000)
    entry = {"key": "hi_rate", "wav": str(corpus.root / "hi_rate.wav"), "txt": "a dog"}
    ds = Dataset(make_cfg(), str(corpus.write_list([entry])), corpus.tokenizer, train=False)
    (batch,) = list(ds.iterate())
    assert batch["feats_lengths"].tolist() == [1 + (12800 - 400) // 160]


def test_real_8k_speech_kept_when_allowed(corpus, make_cfg, real_8k):
    entry = {"key": "real", "wav": str(real_8k), "txt": "Hello world."}
    list_file = str(corpus.write_list([entry]))
    (skip_batch,) = list(Dataset(make_cfg(), list_file, corpus.tokenizer, train=False).iterate())
    assert skip_batch["skipped"] == {"sample_rate_too_low": 1} and skip_batch["keys"] == []
    ds = Dataset(make_cfg(min_sample_rate=8000), list_file, corpus.tokenizer, train=False)
    (batch,) = list(ds.iterate())
    assert batch["keys"] == ["real"] and batch["feats_lengths"].item() == 1 + (22464 - 400) // 160
    assert torch.isfinite(batch["feats"]).all()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> list[int]:
    """Write a tar of (name, data); returns each member's data offset in the file."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar:
        return [m.offset_data for m in tar.getmembers()]


def utt_members(entry: dict) -> list[tuple[str, bytes]]:
    return [
        (f"{entry['key']}.txt", entry["txt"].encode()),
        (f"{entry['key']}.wav", Path(entry["wav"]).read_bytes()),
    ]


def test_shards_with_bad_members_and_bad_shards(corpus, make_cfg, caplog):
    root, e = corpus.root, corpus.entries
    good = [m for entry in e[0:4] for m in utt_members(entry)]
    write_shard(
        root / "s0.tar",
        good + [("notext.wav", Path(e[0]["wav"]).read_bytes()), ("noaudio.txt", b"the fox")],
    )
    offsets = write_shard(root / "s1.tar", [m for entry in e[4:8] for m in utt_members(entry)])
    data = (root / "s1.tar").read_bytes()
    (root / "s1.tar").write_bytes(data[: offsets[5] + 100])  # cut inside utt06.wav
    (root / "s2.tar").write_bytes(b"this is not a tar archive" * 40)
    corrupt = [("broken.txt", b"the fox"), ("broken.wav", b"RIFF" + bytes(300))]
    write_shard(root / "s3.tar", [m for entry in e[8:12] for m in utt_members(entry)] + corrupt)
    shard_list = root / "shards.list"
    names = ["s0.tar", "s1.tar", "s2.tar", "missing.tar", "s3.tar"]
    shard_list.write_text("".join(f"{root / n}\n" for n in names))

    ds = Dataset(make_cfg(data_type="shard"), str(shard_list), corpus.tokenizer, train=False)
    with caplog.at_level(logging.WARNING):
        _, keys, skipped = run(ds)

    assert sorted(keys) == corpus.keys[0:6] + corpus.keys[8:12]
    assert skipped == {"missing_text": 1, "missing_file": 1, "bad_shard": 3, "bad_audio": 1}
    messages = " ".join(r.getMessage() for r in caplog.records)
    for key in ("notext", "noaudio", "s1.tar", "s2.tar", "missing.tar", "broken"):
        assert key in messages


def test_segments_read_their_samples(tmp_path, corpus, tone, make_cfg):
    data = tone(tmp_path / "long.wav", 2.0)
    wav = str(tmp_path / "long.wav")
    entries = [
        {"key": "seg1", "wav": wav, "txt": "the fox", "start": 0.0, "end": 0.5},
        {"key": "seg2", "wav": wav, "txt": "a dog", "start": 0.5, "end": 1.5},
    ]
    list_file = str(corpus.write_list(entries))
    ds = Dataset(make_cfg(sort=False), list_file, corpus.tokenizer, train=False)
    (batch,) = list(ds.iterate())
    assert batch["keys"] == ["seg2", "seg1"]  # longest first
    assert batch["feats_lengths"].tolist() == [98, 48]
    full, _ = load_audio(wav)
    np.testing.assert_allclose(full, data[:, 0], atol=1 / 32768)
    torch.testing.assert_close(batch["feats"][0, :98], compute_fbank(full[8000:24000], 16000))


def test_batch_contents_and_padding(corpus, make_cfg):
    cfg = make_cfg(batch_size=5)
    ds = build_dataset(cfg, str(corpus.write_list(corpus.entries)), corpus.tokenizer, train=False)
    by_key = {e["key"]: e for e in corpus.entries}
    batches = list(ds)
    assert [len(b["keys"]) for b in batches] == [5, 5, 2]
    for b in batches:
        feats, lens = b["feats"], b["feats_lengths"]
        target, tlens = b["target"], b["target_lengths"]
        assert feats.dtype == torch.float32 and feats.shape[2] == 80
        assert lens.dtype == target.dtype == tlens.dtype == torch.int64
        assert feats.shape[:2] == (len(b["keys"]), lens.max()) and target.shape[1] == tlens.max()
        assert torch.all(lens[:-1] >= lens[1:]) and b["skipped"] == {}
        for i, key in enumerate(b["keys"]):
            wav, sr = load_audio(by_key[key]["wav"])
            torch.testing.assert_close(feats[i, : lens[i]], compute_fbank(wav, sr))
            assert torch.all(feats[i, lens[i] :] == 0)
            _, ids = corpus.tokenizer.tokenize(by_key[key]["txt"])
            assert target[i, : tlens[i]].tolist() == ids
            assert torch.all(target[i, tlens[i] :] == IGNORE_ID)


def test_empty_text_allowed_when_token_min_length_is_zero(corpus, make_cfg):
    entry = dict(corpus.entries[0], txt="")
    cfg = make_cfg(filter__token_min_length=0)
    (batch,) = list(Dataset(cfg, str(corpus.write_list([entry])), corpus.tokenizer, False))
    assert batch["keys"] == [entry["key"]] and batch["target"].shape == (1, 0)
    assert batch["target_lengths"].tolist() == [0]


def test_trailing_batch_reports_pending_skips(corpus, make_cfg):
    missing = [{"key": f"gone{i}", "wav": "nope.wav", "txt": "a"} for i in range(2)]
    list_file = str(corpus.write_list(corpus.entries[:4] + missing))
    ds = Dataset(make_cfg(sort=False), list_file, corpus.tokenizer, train=False)
    batches = list(ds.iterate())
    assert [b["keys"] for b in batches][1] == []
    assert [b["skipped"] for b in batches] == [{}, {"missing_file": 2}]
    last = batches[-1]
    assert last["feats"].shape == (0, 0, 80) and last["target"].shape == (0, 0)
    assert last["feats_lengths"].shape == last["target_lengths"].shape == (0,)

    only_bad = str(corpus.write_list(missing, "bad.list"))
    batches = list(Dataset(make_cfg(), only_bad, corpus.tokenizer, train=True).iterate())
    assert len(batches) == 1 and batches[0]["skipped"] == {"missing_file": 2}


@pytest.mark.parametrize(
    "line, match",
    [
        ("{bad json", "not valid JSON"),
        ('["key", "wav", "txt"]', "JSON object"),
        ('{"key": "a", "wav": "a.wav"}', "'txt'"),
        ('{"key": 1, "wav": "a.wav", "txt": "x"}', "'key'"),
        ('{"key": "a", "wav": "a.wav", "txt": "x", "start": "0"}', "'start'"),
        ('{"key": "a", "wav": "a.wav", "txt": "x", "start": 2, "end": 1}', "invalid segment"),
    ],
)
def test_read_data_list_names_file_and_line(tmp_path, line, match):
    good = json.dumps({"key": "ok", "wav": "ok.wav", "txt": "x"})
    path = tmp_path / "data.list"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(ValueError, match=match) as info:
        read_data_list(path)
    assert f"{path}:3" in str(info.value)


def test_config_errors_name_the_key(corpus, make_cfg):
    list_file = str(corpus.write_list(corpus.entries))
    with pytest.raises(ValueError, match="data.data_type"):
        Dataset(make_cfg(data_type="lmdb"), list_file, corpus.tokenizer, train=False)
    with pytest.raises(ValueError, match="data.batch_type"):
        Dataset(make_cfg(batch_type="bucket"), list_file, corpus.tokenizer, train=False)
    with pytest.raises(ValueError, match="data.speeds"):
        Dataset(make_cfg(speed_perturb=True, speeds=[0.0, 1.0]), list_file, corpus.tokenizer, True)
