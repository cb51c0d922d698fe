"""data.feature_backend: kaldi_native_fbank by default; a backend whose package does not import
is refused when the dataset is built, naming the key, the package and the reason. (Where
torchaudio imports, tests/gpu/test_feature_backends.py compares its fbank with ours.)"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import wenet_eff
from wenet_eff.data.dataset import Dataset
from wenet_eff.data.features import compute_fbank


def test_default_backend_is_kaldi_native_fbank():
    assert wenet_eff.load_config("mini").data.feature_backend == "kaldi_native_fbank"


@pytest.mark.parametrize("backend", ["torchaudio", "kaldifeat"])
def test_a_backend_that_does_not_import_is_named(corpus, make_cfg, monkeypatch, backend):
    # None in sys.modules makes `import` fail as a missing or broken package does
    monkeypatch.setitem(sys.modules, backend, None)
    list_file = corpus.write_list(corpus.entries)
    with pytest.raises(ValueError, match=rf"data.feature_backend={backend}: {backend} does not"):
        Dataset(make_cfg(feature_backend=backend), list_file, corpus.tokenizer, train=True)
    with pytest.raises(ValueError, match="use data.feature_backend=kaldi_native_fbank"):
        compute_fbank(np.zeros(1600, np.float32), 16000, backend=backend)


def test_an_unknown_backend_lists_the_known_ones(corpus, make_cfg):
    list_file = corpus.write_list(corpus.entries)
    with pytest.raises(ValueError, match=r"feature_backend='librosa' is not one of \("):
        Dataset(make_cfg(feature_backend="librosa"), list_file, corpus.tokenizer, train=False)
