"""Data sharding over DDP ranks x DataLoader workers, batch bounds, and determinism."""

import io
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from wenet_eff.data.dataset import Dataset, build_dataloader, build_dataset


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b["keys"]]


@pytest.mark.parametrize("train", [True, False])
def test_ranks_times_workers_cover_each_utterance_once(corpus, make_cfg, train):
    list_file = str(corpus.write_list(corpus.entries))
    orders = []
    for epoch in (0, 1):
        seen = []
        for rank in range(2):
            ds = Dataset(make_cfg(), list_file, corpus.tokenizer, train, rank=rank, world_size=2)
            ds.set_epoch(epoch)
            for worker in range(2):
                part = [e["key"] for e in ds.split_sources(worker, 2)]
                assert keys_of(ds.iterate(worker_id=worker, num_workers=2)) != []
                assert sorted(keys_of(ds.iterate(worker_id=worker, num_workers=2))) == sorted(part)
                seen += part
        assert Counter(seen) == Counter(corpus.keys)
        orders.append(seen)
    assert (orders[0] != orders[1]) == train  # only training reshuffles per epoch


def test_shards_split_over_ranks_and_workers(corpus, make_cfg):
    lines = []
    for s in range(4):
        path = corpus.root / f"shard{s}.tar"
        with tarfile.open(path, "w") as tar:
            for entry in corpus.entries[3 * s : 3 * s + 3]:
                for name, data in [
                    (f"{entry['key']}.wav", Path(entry["wav"]).read_bytes()),
                    (f"{entry['key']}.txt", entry["txt"].encode()),
                ]:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        lines.append(f"{path}\n")
    (corpus.root / "shards.list").write_text("".join(lines))
    cfg = make_cfg(data_type="shard")
    seen = []
    for rank in range(2):
        ds = Dataset(cfg, str(corpus.root / "shards.list"), corpus.tokenizer, True, rank, 2)
        for worker in range(2):
            seen += keys_of(ds.iterate(worker_id=worker, num_workers=2))
    assert Counter(seen) == Counter(corpus.keys)


def test_dataloader_with_workers_sees_everything_once(corpus, make_cfg):
    cfg = make_cfg(num_workers=2, prefetch=2)
    list_file = str(corpus.write_list(corpus.entries))
    loader, ds = build_dataloader(cfg, list_file, corpus.tokenizer, train=True)
    assert loader.batch_size is None and loader.num_workers == 2 and loader.prefetch_factor == 2
    ds.set_epoch(3)
    assert Counter(keys_of(loader)) == Counter(corpus.keys)


def test_static_batches_hold_batch_size(corpus, make_cfg):
    cfg = make_cfg(batch_size=5, spec_aug=True, speed_perturb=True)
    ds = Dataset(cfg, str(corpus.write_list(corpus.entries)), corpus.tokenizer, train=True)
    assert [len(b["keys"]) for b in ds] == [5, 5, 2]


@pytest.mark.parametrize("max_frames", [200, 400, 1000])
def test_dynamic_batches_hold_padded_frame_budget(corpus, make_cfg, max_frames):
    cfg = make_cfg(batch_type="dynamic", max_frames_in_batch=max_frames, speed_perturb=True)
    ds = Dataset(cfg, str(corpus.write_list(corpus.entries)), corpus.tokenizer, train=True)
    batches = list(ds)
    for b in batches:
        assert b["feats"].shape[0] * b["feats"].shape[1] <= max_frames
    assert Counter(keys_of(batches)) == Counter(corpus.keys)


def test_dynamic_batching_skips_utterances_over_budget(corpus, make_cfg):
    cfg = make_cfg(batch_type="dynamic", max_frames_in_batch=120)
    ds = Dataset(cfg, str(corpus.write_list(corpus.entries)), corpus.tokenizer, train=False)
    batches = list(ds)
    assert sorted(keys_of(batches)) == corpus.keys[:9]  # utt09..utt11 have 128..148 frames
    assert sum((Counter(b["skipped"]) for b in batches), Counter()) == {"too_long_for_batch": 3}


def augmenting_cfg(make_cfg, **kw):
    return make_cfg(
        dither=1.0, speed_perturb=True, spec_aug=True, spec_sub=True, spec_trim=True, **kw
    )


def test_deterministic_given_seed_epoch_rank_worker(corpus, make_cfg):
    list_file = str(corpus.write_list(corpus.entries))

    def epoch_batches(epoch: int, seed: int = 777) -> list[dict]:
        ds = Dataset(augmenting_cfg(make_cfg, seed=seed), list_file, corpus.tokenizer, train=True)
        ds.set_epoch(epoch)
        return list(ds)

    first, again = epoch_batches(0), epoch_batches(0)
    assert len(first) == len(again)
    for a, b in zip(first, again, strict=True):
        assert a["keys"] == b["keys"]
        for name in ("feats", "feats_lengths", "target", "target_lengths"):
            assert torch.equal(a[name], b[name]), name
    other_epoch, other_seed = epoch_batches(1), epoch_batches(0, seed=1)
    for other in (other_epoch, other_seed):
        assert keys_of(other) != keys_of(first) or not all(
            torch.equal(a["feats"], b["feats"]) for a, b in zip(first, other, strict=False)
        )


def test_rank_and_world_size_default_to_torch_distributed(corpus, make_cfg, monkeypatch):
    import wenet_eff.data.dataset as dataset_module

    monkeypatch.setattr(dataset_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dataset_module.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dataset_module.dist, "get_world_size", lambda: 3)
    list_file = str(corpus.write_list(corpus.entries))
    ds = build_dataset(make_cfg(), list_file, corpus.tokenizer, train=False)
    assert (ds.rank, ds.world_size) == (1, 3)
    assert [e["key"] for e in ds.split_sources()] == corpus.keys[1::3]
    explicit = build_dataset(make_cfg(), list_file, corpus.tokenizer, False, rank=0, world_size=1)
    assert (explicit.rank, explicit.world_size) == (0, 1)
