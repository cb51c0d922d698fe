"""WeNet's LibriSpeech U2++ Conformer state-dict layout (key -> shape), written out per block.

The same layout as `../shared/reference/wenet_u2pp_conformer_keys.json` (625 entries,
49,355,934 parameters; train_u2++_conformer.yaml, input_dim 80, vocab 5002), stated as one
encoder block, one decoder block and the keys around them instead of a 625-line copy.
Key order is WeNet's registration order; the layout test checks it too.
"""

from __future__ import annotations

D, H, FF, V, K, PE = 256, 4, 2048, 5002, 15, 5000
ENCODER_BLOCKS, DECODER_BLOCKS = 12, 3
TOTAL_PARAMETERS = 49_355_934
BUFFERS = (
    "encoder.global_cmvn.mean",
    "encoder.global_cmvn.istd",
    "encoder.embed.pos_enc.pe",
    "decoder.left_decoder.embed.1.pe",
    "decoder.right_decoder.embed.1.pe",
)


def _linear(name: str, out: int, inp: int, bias: bool = True) -> dict:
    return {f"{name}.weight": [out, inp], **({f"{name}.bias": [out]} if bias else {})}


def _norm(name: str) -> dict:
    return {f"{name}.weight": [D], f"{name}.bias": [D]}


def _ffn(name: str) -> dict:
    return {**_linear(f"{name}.w_1", FF, D), **_linear(f"{name}.w_2", D, FF)}


def _attention(name: str) -> dict:
    return {
        k: v for p in ("q", "k", "v", "out") for k, v in _linear(f"{name}.linear_{p}", D, D).items()
    }


ENCODER_BLOCK = {
    "self_attn.pos_bias_u": [H, D // H],
    "self_attn.pos_bias_v": [H, D // H],
    **_attention("self_attn"),
    **_linear("self_attn.linear_pos", D, D, bias=False),
    **_ffn("feed_forward"),
    **_ffn("feed_forward_macaron"),
    "conv_module.pointwise_conv1.weight": [2 * D, D, 1],
    "conv_module.pointwise_conv1.bias": [2 * D],
    "conv_module.depthwise_conv.weight": [D, 1, K],
    "conv_module.depthwise_conv.bias": [D],
    **_norm("conv_module.norm"),
    "conv_module.pointwise_conv2.weight": [D, D, 1],
    "conv_module.pointwise_conv2.bias": [D],
    **_norm("norm_ff"),
    **_norm("norm_mha"),
    **_norm("norm_ff_macaron"),
    **_norm("norm_conv"),
    **_norm("norm_final"),
}

DECODER_BLOCK = {
    **_attention("self_attn"),
    **_attention("src_attn"),
    **_ffn("feed_forward"),
    **_norm("norm1"),
    **_norm("norm2"),
    **_norm("norm3"),
}


def _decoder(side: str) -> dict:
    prefix = f"decoder.{side}_decoder"
    return {
        f"{prefix}.embed.0.weight": [V, D],
        f"{prefix}.embed.1.pe": [1, PE, D],
        **_norm(f"{prefix}.after_norm"),
        **_linear(f"{prefix}.output_layer", V, D),
        **{
            f"{prefix}.decoders.{i}.{k}": v
            for i in range(DECODER_BLOCKS)
            for k, v in DECODER_BLOCK.items()
        },
    }


def wenet_u2pp_layout() -> dict[str, list[int]]:
    """The whole state-dict layout, in WeNet's key order."""
    return {
        "encoder.global_cmvn.mean": [80],
        "encoder.global_cmvn.istd": [80],
        "encoder.embed.conv.0.weight": [D, 1, 3, 3],
        "encoder.embed.conv.0.bias": [D],
        "encoder.embed.conv.2.weight": [D, D, 3, 3],
        "encoder.embed.conv.2.bias": [D],
        **_linear("encoder.embed.out.0", D, D * 19),  # 80 mel bins -> 19 after two stride-2 convs
        "encoder.embed.pos_enc.pe": [1, PE, D],
        **_norm("encoder.after_norm"),
        **{
            f"encoder.encoders.{i}.{k}": v
            for i in range(ENCODER_BLOCKS)
            for k, v in ENCODER_BLOCK.items()
        },
        **_decoder("left"),
        **_decoder("right"),
        **_linear("ctc.ctc_lo", V, D),
    }
