"""WeNet-style streaming ASR dataset: data.list or tar shards in, padded fbank batches out.

Per epoch and per (rank, worker), `Dataset` walks its share of the sources through:
read audio -> sample-rate check / resample -> speed perturb -> tokenize -> length filter
-> fbank -> SpecSub / SpecTrim / SpecAugment -> shuffle buffer -> sort buffer -> batch -> pad.
Bad utterances never raise: each is skipped, logged with its key, and counted by reason in
the `skipped` field of the next batch. Text with tokens outside units.txt is such a skip
(`unknown_token`) in training; outside training it is kept with those tokens as `<unk>` and
counted as `unknown_token_mapped`, so decoding never depends on the reference text; audio with
several channels is kept, averaged to mono, and counted as `downmixed`. Given the
model's subsampling (`ctc_frames`), a transcript CTC cannot align to its encoder frames (more
labels, plus a blank between each repeated pair, than frames) is skipped as `ctc_infeasible`:
its CTC loss is infinite, which the loss's zero_infinity would turn into a silent 0.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wenet_eff.data.audio import AudioError, speed_perturb, to_sample_rate
from wenet_eff.data.augment import spec_aug, spec_sub, spec_trim
from wenet_eff.data.batching import (
    DOWNMIXED,
    UNKNOWN_TOKEN_MAPPED,
    Example,
    SkipCounter,
    dynamic_batches,
    padded_batches,
    shuffle_buffer,
    sort_buffer,
    static_batches,
)
from wenet_eff.data.features import compute_fbank, feature_backend, num_frames
from wenet_eff.data.sources import (
    Utterance,
    iter_shard,
    raw_utterances,
    read_data_list,
    read_shard_list,
)
from wenet_eff.data.tokenizer import Tokenizer, UnknownTokenError

logger = logging.getLogger(__name__)

DATA_TYPES = ("raw", "shard")
BATCH_TYPES = ("static", "dynamic")


@dataclass
class SpecAugConfig:
    num_t_mask: int = 2
    num_f_mask: int = 2
    max_t: int = 50
    max_f: int = 10


@dataclass
class SpecSubConfig:
    max_t: int = 20
    num_t_sub: int = 3


@dataclass
class SpecTrimConfig:
    max_t: int = 20


@dataclass
class FilterConfig:
    """Utterances outside these bounds are dropped (lengths in 10 ms frames / tokens)."""

    max_length: int = 4000
    min_length: int = 10
    token_max_length: int = 200
    token_min_length: int = 1


@dataclass
class DataConfig:
    """Data pipeline: sources, features, augmentation and batching."""

    train_data: str = ""
    cv_data: str = ""
    data_type: str = "raw"  # raw (data.list) | shard (list of .tar)
    sample_rate: int = 16000
    min_sample_rate: int = 16000  # audio below this rate is skipped (upsampling adds no band)
    num_mel_bins: int = 80
    frame_length: int = 25
    frame_shift: int = 10
    dither: float = 1.0  # training only; evaluation uses 0
    # kaldi_native_fbank | torchaudio (WeNet's kaldi.fbank) | kaldifeat: data/features.py
    feature_backend: str = "kaldi_native_fbank"
    speed_perturb: bool = False
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    spec_aug: bool = True
    spec_aug_conf: SpecAugConfig = field(default_factory=SpecAugConfig)
    spec_sub: bool = False
    spec_sub_conf: SpecSubConfig = field(default_factory=SpecSubConfig)
    spec_trim: bool = False
    spec_trim_conf: SpecTrimConfig = field(default_factory=SpecTrimConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    shuffle: bool = True
    shuffle_size: int = 1500
    sort: bool = True
    sort_size: int = 500
    batch_type: str = "static"  # static | dynamic
    batch_size: int = 16
    max_frames_in_batch: int = 12000
    num_workers: int = 2
    prefetch: int = 4
    seed: int = 777


class Dataset(IterableDataset):
    """Iterable of padded batch dicts (see `batching.pad_batch`), deterministic given
    (data_cfg.seed, epoch, rank, worker).

    Args:
        data_cfg: the `data` config node.
        list_file: `data.list` (data_type raw) or a shard list (data_type shard).
        tokenizer: text -> ids (normalises the text itself).
        train: enables list shuffling, dither, speed perturbation, spec augmentation and the
            shuffle buffer, and skips text with unknown tokens (otherwise mapped to `<unk>`).
        rank, world_size: this process's DDP share of the sources (`rank::world_size`).
        ctc_frames: the encoder frames a number of fbank frames gives (the model's
            subsampling, `nn.subsampling.subsampled_frames`); when given, utterances CTC cannot
            align are skipped as `ctc_infeasible`.
    """

    def __init__(
        self,
        data_cfg: DataConfig | DictConfig,
        list_file: str | os.PathLike,
        tokenizer: Tokenizer,
        train: bool,
        rank: int = 0,
        world_size: int = 1,
        ctc_frames: Callable[[int], int] | None = None,
    ) -> None:
        super().__init__()
        if data_cfg.data_type not in DATA_TYPES:
            raise ValueError(f"data.data_type: '{data_cfg.data_type}' is not one of {DATA_TYPES}")
        if data_cfg.batch_type not in BATCH_TYPES:
            raise ValueError(
                f"data.batch_type: '{data_cfg.batch_type}' is not one of {BATCH_TYPES}"
            )
        if data_cfg.speed_perturb and not all(s > 0 for s in data_cfg.speeds):
            raise ValueError(f"data.speeds: speeds must be > 0, got {list(data_cfg.speeds)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        feature_backend(data_cfg.feature_backend)  # fails here, not as a skip per utterance
        self.cfg = data_cfg
        self.list_file = list_file
        self.tokenizer = tokenizer
        self.train = train
        self.unk_policy = "error" if train else "map"
        self.rank = rank
        self.world_size = world_size
        self.ctc_frames = ctc_frames
        self.epoch = 0
        if data_cfg.data_type == "raw":
            self.sources: list = read_data_list(list_file)
        else:
            self.sources = read_shard_list(list_file)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle order and random augmentation the next pass uses."""
        self.epoch = epoch

    def split_sources(self, worker_id: int = 0, num_workers: int = 1) -> list:
        """This (rank, worker)'s sources for the current epoch: the list shuffled with
        seed + epoch (training only), then `[rank::world_size][worker_id::num_workers]`."""
        order = list(range(len(self.sources)))
        if self.train:
            random.Random(self.cfg.seed + self.epoch).shuffle(order)
        mine = order[self.rank :: self.world_size][worker_id::num_workers]
        return [self.sources[i] for i in mine]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        if info is None:
            return self.iterate()
        return self.iterate(info.id, info.num_workers)

    def iterate(self, worker_id: int = 0, num_workers: int = 1) -> Iterator[dict]:
        """Batches of DataLoader worker `worker_id` of `num_workers` (`__iter__` fills these in)."""
        cfg = self.cfg
        stream_id = (cfg.seed, self.epoch, self.rank, worker_id)
        rng = random.Random(":".join(map(str, stream_id)))
        np_rng = np.random.default_rng(stream_id)
        skips = SkipCounter()
        examples = (
            ex
            for utt in self._utterances(self.split_sources(worker_id, num_workers), skips)
            if (ex := self._process(utt, skips, rng, np_rng)) is not None
        )
        if self.train and cfg.shuffle:
            examples = shuffle_buffer(examples, cfg.shuffle_size, rng)
        if cfg.sort:
            examples = sort_buffer(examples, cfg.sort_size)
        if cfg.batch_type == "static":
            batches = static_batches(examples, cfg.batch_size)
        else:
            batches = dynamic_batches(examples, cfg.max_frames_in_batch, skips)
        return padded_batches(batches, cfg.num_mel_bins, skips)

    def _utterances(self, sources: list, skips: SkipCounter) -> Iterator[Utterance]:
        if self.cfg.data_type == "raw":
            return raw_utterances(sources, skips)
        return (utt for tar_path in sources for utt in iter_shard(tar_path, skips))

    def _process(
        self,
        utt: Utterance,
        skips: SkipCounter,
        rng: random.Random,
        np_rng: np.random.Generator,
    ) -> Example | None:
        """Audio + text of one utterance -> Example, or None after reporting why it was skipped."""
        try:
            return self._make_example(utt, skips, rng, np_rng)
        except AudioError as exc:
            skips(utt.key, exc.reason, str(exc))
        except UnknownTokenError as exc:
            skips(utt.key, "unknown_token", f"{exc.bad_tokens} not in units")
        except Exception as exc:  # bad input must not stop training: count it, keep the trace
            logger.exception("utterance %s failed", utt.key)
            skips(utt.key, "processing_error", repr(exc))
        return None

    def _make_example(
        self,
        utt: Utterance,
        skips: SkipCounter,
        rng: random.Random,
        np_rng: np.random.Generator,
    ) -> Example | None:
        cfg = self.cfg
        wav, sr = utt.load(
            lambda channels: skips.note(utt.key, DOWNMIXED, f"{channels} channels averaged")
        )
        wav = to_sample_rate(wav, sr, cfg.sample_rate, cfg.min_sample_rate, utt.source)
        if self.train and cfg.speed_perturb:
            wav = speed_perturb(wav, cfg.sample_rate, rng.choice(list(cfg.speeds)))
        tokens, ids = self.tokenizer.tokenize(utt.txt, self.unk_policy)
        if self.unk_policy == "map" and (unknown := self.tokenizer.unknown_tokens(tokens)):
            skips.note(utt.key, UNKNOWN_TOKEN_MAPPED, f"{unknown} not in units, used <unk>")
        if not ids and cfg.filter.token_min_length > 0:  # 0: e.g. decoding unlabelled audio
            skips(utt.key, "empty_text", f"text {utt.txt!r} has no tokens after normalisation")
            return None
        frames = num_frames(len(wav), cfg.sample_rate, cfg.frame_length, cfg.frame_shift)
        reason = _length_violation(frames, len(ids), cfg)
        if reason:
            skips(utt.key, reason, f"{frames} frames, {len(ids)} tokens")
            return None
        feats = compute_fbank(
            wav,
            cfg.sample_rate,
            cfg.num_mel_bins,
            cfg.frame_length,
            cfg.frame_shift,
            dither=cfg.dither if self.train else 0.0,
            rng=np_rng,
            backend=cfg.feature_backend,
        )
        if self.train:
            feats = self._augment(feats, rng)  # SpecTrim may shorten it: check CTC after
        if self.ctc_frames is not None:
            frames, labels = self.ctc_frames(feats.shape[0]), _ctc_labels(ids)
            if frames < labels:
                skips(
                    utt.key,
                    "ctc_infeasible",
                    f"{len(ids)} tokens need {labels} encoder frames, the audio gives {frames}",
                )
                return None
        return Example(utt.key, feats, torch.tensor(ids, dtype=torch.int64))

    def _augment(self, feats: torch.Tensor, rng: random.Random) -> torch.Tensor:
        cfg = self.cfg
        if cfg.spec_sub:
            feats = spec_sub(feats, cfg.spec_sub_conf.num_t_sub, cfg.spec_sub_conf.max_t, rng)
        if cfg.spec_trim:
            feats = spec_trim(feats, cfg.spec_trim_conf.max_t, rng)
        if cfg.spec_aug:
            conf = cfg.spec_aug_conf
            feats = spec_aug(feats, conf.num_t_mask, conf.num_f_mask, conf.max_t, conf.max_f, rng)
        return feats


def _ctc_labels(ids: list[int]) -> int:
    """The fewest frames a CTC alignment of `ids` takes: one per label, plus a blank between
    two equal neighbours."""
    return len(ids) + sum(a == b for a, b in zip(ids, ids[1:], strict=False))


def _length_violation(frames: int, tokens: int, cfg: DataConfig | DictConfig) -> str | None:
    bounds = cfg.filter
    if frames > bounds.max_length:
        return "too_long"
    if frames < bounds.min_length:
        return "too_short"
    if tokens > bounds.token_max_length:
        return "text_too_long"
    if tokens < bounds.token_min_length:
        return "text_too_short"
    return None


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def build_dataset(
    data_cfg: DataConfig | DictConfig,
    list_file: str | os.PathLike,
    tokenizer: Tokenizer,
    train: bool,
    rank: int | None = None,
    world_size: int | None = None,
    ctc_frames: Callable[[int], int] | None = None,
) -> Dataset:
    """A `Dataset`; rank/world_size default to torch.distributed's when it is initialised."""
    rank, world_size = _rank_world(rank, world_size)
    return Dataset(data_cfg, list_file, tokenizer, train, rank, world_size, ctc_frames)


def build_dataloader(
    data_cfg: DataConfig | DictConfig,
    list_file: str | os.PathLike,
    tokenizer: Tokenizer,
    train: bool,
    rank: int | None = None,
    world_size: int | None = None,
    ctc_frames: Callable[[int], int] | None = None,
) -> tuple[DataLoader, Dataset]:
    """(DataLoader yielding the dataset's batches as they are, the Dataset for `set_epoch`);
    see `Dataset` for the arguments."""
    dataset = build_dataset(data_cfg, list_file, tokenizer, train, rank, world_size, ctc_frames)
    workers = data_cfg.num_workers
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=data_cfg.prefetch if workers > 0 else None,
        # evaluation data has no per-epoch state, so its workers live as long as the loader: a
        # fresh fork from the multi-threaded trainer at every validation can deadlock the child
        # (seen with 50-utterance epochs); training workers are re-forked to see set_epoch
        persistent_workers=workers > 0 and not train,
    )
    return loader, dataset
