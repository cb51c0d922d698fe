"""The supported torch range: the GPU image's 2.11 and the CPU pin 2.13 pass quietly, releases
outside it warn with the range, and the installed torch is inside it."""

from __future__ import annotations

import warnings

import pytest
import torch

from wenet_eff import torch_version


@pytest.mark.parametrize(
    "version, expected",
    [("2.11.0+cu130", (2, 11)), ("2.13.0+cpu", (2, 13)), ("2.14.0.dev20260101", (2, 14))],
)
def test_release_reads_major_minor(version, expected):
    assert torch_version.release(version) == expected


def test_release_refuses_a_string_without_major_minor():
    with pytest.raises(ValueError, match="'nightly' does not start with major.minor"):
        torch_version.release("nightly")


@pytest.mark.parametrize("version", ["2.11.0+cu130", "2.12.1", "2.13.0+cpu"])
def test_supported_releases_pass_quietly(version):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_version.check(version)


@pytest.mark.parametrize("version", ["2.10.1", "2.14.0", "3.0.0"])
def test_releases_outside_the_range_warn_with_it(version):
    with pytest.warns(RuntimeWarning, match=rf"torch {version} .* \(2.11 to 2.13"):
        torch_version.check(version)


def test_the_installed_torch_is_supported():
    lo, hi = torch_version.SUPPORTED
    assert lo <= torch_version.release(torch.__version__) <= hi
