"""Global CMVN: accumulation, merge, JSON round trip, WeNet's istd formula, errors."""

import json

import numpy as np
import pytest
import torch

from wenet_eff.data.cmvn import CmvnStats, load_cmvn


def feats_chunks(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(3.0, 2.0, size=(int(n), 5)).astype(np.float32) for n in (7, 13, 1)]


def test_accumulate_matches_numpy_and_merge():
    chunks = feats_chunks()
    whole = CmvnStats()
    for c in chunks:
        whole.add(torch.from_numpy(c))
    left, right = CmvnStats(), CmvnStats(5)
    left.add(chunks[0])
    for c in chunks[1:]:
        right.add(c)
    left.merge(right)
    allx = np.concatenate(chunks).astype(np.float64)
    for stats in (whole, left):
        assert stats.frame_num == 21
        np.testing.assert_allclose(stats.mean_stat, allx.sum(0))
        np.testing.assert_allclose(stats.var_stat, (allx**2).sum(0))


def test_round_trip_and_istd_formula(tmp_path):
    chunks = feats_chunks(1)
    stats = CmvnStats()
    for c in chunks:
        stats.add(c)
    stats.add(np.full((4, 5), 7.0, np.float32))
    path = tmp_path / "global_cmvn"
    stats.write(path)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    obj = json.loads(path.read_text())
    assert set(obj) == {"mean_stat", "var_stat", "frame_num"} and obj["frame_num"] == 25
    mean, istd = load_cmvn(path)
    n = obj["frame_num"]
    ref_mean = np.array(obj["mean_stat"]) / n
    ref_var = np.maximum(np.array(obj["var_stat"]) / n - ref_mean**2, 1e-20)
    assert mean.dtype == istd.dtype == torch.float32 and mean.shape == (5,)
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-6)
    np.testing.assert_allclose(istd.numpy(), 1 / np.sqrt(ref_var), rtol=1e-6)


def test_constant_dimension_uses_variance_floor(tmp_path):
    stats = CmvnStats()
    stats.add(np.ones((10, 2), np.float32))
    stats.write(tmp_path / "cmvn.json")
    _, istd = load_cmvn(tmp_path / "cmvn.json")
    np.testing.assert_allclose(istd.numpy(), [1e10, 1e10], rtol=1e-6)


def test_dimension_mismatch_rejected():
    stats = CmvnStats()
    stats.add(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="dim"):
        stats.add(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ('{"mean_stat": [1.0], "var_stat": [2.0]}', "frame_num"),
        ('{"mean_stat": [1.0, 2.0], "var_stat": [2.0], "frame_num": 3}', "equal-length"),
        ('{"mean_stat": [1.0], "var_stat": [2.0], "frame_num": 0}', "positive"),
        ('{"mean_stat": ["a"], "var_stat": [2.0], "frame_num": 3}', "numeric"),
        (
            '{"mean_stat": [1.0, NaN], "var_stat": [2.0, 2.0], "frame_num": 3}',
            r"mean_stat\[1\] is nan",
        ),
        ('{"mean_stat": [1.0], "var_stat": [Infinity], "frame_num": 3}', r"var_stat\[0\] is inf"),
        (
            '{"mean_stat": [-Infinity], "var_stat": [1.0], "frame_num": 3}',
            r"mean_stat\[0\] is -inf",
        ),
        ('{"mean_stat": [1e300], "var_stat": [1e300], "frame_num": 1}', "overflow float32"),
    ],
)
def test_malformed_file_names_the_file(tmp_path, content, match):
    path = tmp_path / "bad_cmvn"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        load_cmvn(path)
    assert str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_cmvn(tmp_path / "nowhere.json")
