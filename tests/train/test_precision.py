"""train.dtype: the choice of auto from a device's bf16 features and the model's width."""

from __future__ import annotations

import pytest

from wenet_eff.train.precision import MIN_BF16_WIDTH, choose_dtype

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize("feature", ["amx_bf16", "avx512_bf16", "cuda_bf16"])
def test_auto_picks_bf16_with_a_fast_bf16_product_and_a_wide_model(feature):
    dtype, why = choose_dtype("auto", MIN_BF16_WIDTH, frozenset({feature}))
    assert dtype == "bf16"
    assert feature in why and str(MIN_BF16_WIDTH) in why


def test_auto_keeps_narrow_models_in_fp32_even_with_amx():
    # the measurement: mini_moe (width 144) trains 0.92x as fast in bf16 on AMX
    dtype, why = choose_dtype("auto", 144, frozenset({"amx_bf16", "avx512_bf16"}))
    assert dtype == "fp32" and "144" in why


def test_auto_is_fp32_without_a_fast_bf16_product():
    # an AVX2 CPU: bf16 autocast only adds casts around fp32 products
    dtype, why = choose_dtype("auto", 1024, NONE)
    assert dtype == "fp32" and "no fast bf16" in why


@pytest.mark.parametrize("setting", ["fp32", "bf16"])
def test_a_set_dtype_is_kept_whatever_the_device(setting):
    assert choose_dtype(setting, 144, NONE)[0] == setting
    assert choose_dtype(setting, 1024, frozenset({"amx_bf16"}))[0] == setting


def test_a_bad_dtype_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"train\.dtype: 'fp16' is not one of fp32, bf16, auto"):
        choose_dtype("fp16", 256, frozenset({"cuda_bf16"}))
