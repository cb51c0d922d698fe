"""Decode with the exported .onnx graphs through onnxruntime (the path for onnxruntime users,
and the third engine of the runtime benchmark).

    decoder = OnnxDecoder("exp/mini/runtime_fp32", chunk_size=16, threads=1)
    result = decoder.decode(samples)   # float32 in [-1, 1] at the model's sample rate
    result["text"]

The same steps as the C++ runtime (runtime/src/asr_decoder.cc): Kaldi fbank
(kaldi-native-fbank), the streaming step chunk by chunk with its caches (or the full-context
graph), CTC prefix beam search (wenet_eff.decode.ctc), attention rescoring with the decoder
graph. No endpointing (one segment per call).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from wenet_eff.data.features import compute_fbank
from wenet_eff.decode.ctc import CtcPrefixBeam, ctc_greedy_search
from wenet_eff.export.package import graph_file

MODES = ("attention_rescoring", "ctc_prefix_beam_search", "ctc_greedy_search")


def _subsampled(layout: list[list[int]], frames: int) -> int:
    for kernel, stride in layout:
        if frames < kernel:
            return 0
        frames = (frames - kernel) // stride + 1
    return frames


def load_units(path: str | Path) -> list[str]:
    """units.txt -> symbols by id."""
    symbols: dict[int, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            sym, idx = line.split()
            symbols[int(idx)] = sym
    return [symbols.get(i, "") for i in range(max(symbols) + 1)]


def detokenize(symbols: list[str], tokens: list[int], join: str, silent: set[int]) -> str:
    """As the tokenizer (and the C++ SymbolTable) does: `silent` ids (blank, sos, eos) left
    out, join, "▁" -> space, collapse."""
    text = join.join(symbols[t] for t in tokens if t not in silent)
    return " ".join(text.replace("\u2581", " ").split())


class OnnxDecoder:
    """One decoder over a runtime model directory's .onnx graphs (see the module docstring).

    Args:
        model_dir: written by wenet_eff.bin.export (with "onnx" among its formats).
        chunk_size: 0 the exported chunk, -1 full context.
        mode, beam_size, ctc_weight, reverse_weight: as decoder_main's flags.
        threads: onnxruntime intra-op threads.
        precision: "fp32" runs the float graphs (NAME.onnx); "int8" onnxruntime's quantized
            ones (NAME.int8.onnx, written when int8 is among the export's precisions).
    """

    def __init__(
        self,
        model_dir: str | Path,
        chunk_size: int = 0,
        mode: str = "attention_rescoring",
        beam_size: int = 10,
        ctc_weight: float = 0.3,
        reverse_weight: float = 0.5,
        threads: int = 1,
        precision: str = "fp32",
    ):
        import onnxruntime as ort

        if mode not in MODES:
            raise ValueError(f"mode '{mode}' unknown (choose from {', '.join(MODES)})")
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision '{precision}': the .onnx graphs are fp32 or int8")
        self.dir = Path(model_dir)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.chunk_size = self.meta["chunk_size"] if chunk_size == 0 else chunk_size
        if self.chunk_size > 0 and self.chunk_size != self.meta["chunk_size"]:
            raise ValueError(
                f"chunk_size {chunk_size}: {model_dir} was exported for chunk "
                f"{self.meta['chunk_size']} (or use -1 for full context)"
            )
        self.mode, self.beam_size = mode, beam_size
        self.ctc_weight, self.reverse_weight = ctc_weight, reverse_weight
        self.symbols = load_units(self.dir / "units.txt")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sessions = {}
        self.precision = precision
        for name in ("encoder_chunk", "encoder_full", "decoder"):
            path = self.dir / graph_file(name, precision, "onnx")
            if path.exists():
                self.sessions[name] = ort.InferenceSession(
                    str(path), opts, providers=["CPUExecutionProvider"]
                )
        needed = "encoder_chunk" if self.chunk_size > 0 else "encoder_full"
        if needed not in self.sessions:
            raise FileNotFoundError(
                f"{self.dir / graph_file(needed, precision, 'onnx')}: not exported"
            )

    def _run(self, name: str, *inputs: np.ndarray) -> list[np.ndarray]:
        session = self.sessions[name]
        return session.run(
            None, {i.name: x for i, x in zip(session.get_inputs(), inputs, strict=True)}
        )

    def _encode(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, F) features -> (CTC log posteriors (T', V), encoder output (T', D))."""
        m = self.meta
        if self.chunk_size <= 0:
            if _subsampled(m["subsampling_layout"], len(feats)) < 2:
                return np.zeros((0, m["vocab_size"]), np.float32), np.zeros(
                    (0, m["output_size"]), np.float32
                )
            logp, out = self._run("encoder_full", feats[None])
            return logp[0], out[0]
        window, context = m["chunk_window"], m["right_context"] + 1
        stride = m["subsampling_rate"] * self.chunk_size
        att = np.zeros(m["att_cache"], np.float32)
        cnn = np.zeros(m["cnn_cache"], np.float32)
        logps, outs, offset = [], [], 0
        for start in range(0, len(feats) - context + 1, stride):
            chunk = feats[start : start + window]
            valid = (
                self.chunk_size
                if len(chunk) == window
                else _subsampled(m["subsampling_layout"], len(chunk))
            )
            if len(chunk) < window:
                chunk = np.concatenate([chunk, np.zeros((window - len(chunk), chunk.shape[1]))])
            logp, out, att, cnn = self._run(
                "encoder_chunk",
                chunk[None].astype(np.float32),
                np.array([offset], np.int64),
                np.array([valid], np.int64),
                att,
                cnn,
            )
            logps.append(logp[0, :valid])
            outs.append(out[0, :valid])
            offset += valid
        if not logps:  # shorter than one encoder frame
            return np.zeros((0, m["vocab_size"]), np.float32), np.zeros(
                (0, m["output_size"]), np.float32
            )
        return np.concatenate(logps), np.concatenate(outs)

    def decode(self, samples: np.ndarray) -> dict:
        """Decode one utterance: {"text", "tokens", "encoder_seconds"}."""
        import torch

        m = self.meta
        feats = compute_fbank(
            samples, m["sample_rate"], m["num_mel_bins"], m["frame_length_ms"], m["frame_shift_ms"]
        ).numpy()
        start = time.perf_counter()
        logp, enc = self._encode(feats)
        encoder_seconds = time.perf_counter() - start
        logp_t = torch.from_numpy(logp)
        if self.mode == "ctc_greedy_search":
            lens = torch.tensor([len(logp)])
            tokens = ctc_greedy_search(logp_t[None], lens, m["blank"])[0].tokens
        else:
            search = CtcPrefixBeam(self.beam_size, m["blank"])
            search.advance(logp_t)
            nbest = search.nbest()
            tokens = nbest[0].tokens
            width = max(1, max(len(h.tokens) for h in nbest))
            # within the decoder graph's bounds (meta.json), else the CTC best stands
            if (
                self.mode == "attention_rescoring"
                and m.get("decoder_min_frames", 2) <= len(enc) <= m.get("decoder_max_frames", 90000)
                and width <= m.get("decoder_max_len", 4096)
            ):
                hyps = np.full((len(nbest), width), m["eos"], np.int64)
                for i, h in enumerate(nbest):
                    hyps[i, : len(h.tokens)] = h.tokens
                lens = np.array([len(h.tokens) for h in nbest], np.int64)
                l2r, r2l = self._run("decoder", enc[None], hyps, lens)
                use_right = m["has_right_decoder"] and self.reverse_weight > 0
                att = (
                    (1 - self.reverse_weight) * l2r + self.reverse_weight * r2l
                    if use_right
                    else l2r
                )
                total = att + self.ctc_weight * np.array([h.score for h in nbest])
                tokens = nbest[int(np.argmax(total))].tokens
        text = detokenize(self.symbols, tokens, m["token_join"], {m["blank"], m["sos"], m["eos"]})
        return {"text": text, "tokens": tokens, "encoder_seconds": encoder_seconds}
