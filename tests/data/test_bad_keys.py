"""A data.list or shard key with whitespace (or none at all) is skipped and counted as `bad_key`
by the dataset that training and recognize read, never decoded under a key that the result files
would split."""

from __future__ import annotations

import io
import logging
import tarfile
from collections import Counter

import pytest

from wenet_eff.data.dataset import Dataset

BAD_KEYS = ["utt 01", "utt\t02", "utt\u300003", ""]


def _skipped(dataset: Dataset) -> tuple[list[str], Counter]:
    batches = list(dataset.iterate())
    return [k for b in batches for k in b["keys"]], sum(
        (Counter(b["skipped"]) for b in batches), Counter()
    )


@pytest.mark.parametrize("train", [False, True])
def test_data_list_keys_with_whitespace_are_skipped(corpus, make_cfg, caplog, train):
    bad = [dict(corpus.entries[i], key=key) for i, key in enumerate(BAD_KEYS)]
    ds = Dataset(make_cfg(), str(corpus.write_list(bad + corpus.entries[4:])), corpus.tokenizer,
                 train=train)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        keys, skipped = _skipped(ds)
    assert sorted(keys) == corpus.keys[4:]
    assert skipped == Counter({"bad_key": 4})
    messages = [r.getMessage() for r in caplog.records]
    for key in BAD_KEYS[:3]:
        assert any(f"key {key!r} contains whitespace" in m for m in messages)
    assert any("empty key" in m for m in messages)


def test_shard_keys_with_whitespace_are_skipped(corpus, make_cfg, tmp_path):
    tar_path = tmp_path / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        for key, entry in zip(["utt 01", "good"], corpus.entries, strict=False):
            for ext, data in (
                ("txt", entry["txt"].encode()),
                ("wav", open(entry["wav"], "rb").read()),
            ):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    shard_list = tmp_path / "shards.list"
    shard_list.write_text(f"{tar_path}\n")
    ds = Dataset(make_cfg(data_type="shard"), str(shard_list), corpus.tokenizer, train=False)
    keys, skipped = _skipped(ds)
    assert keys == ["good"] and skipped == Counter({"bad_key": 1})
