"""Read what experiments and benchmarks wrote: WER, RTF, sizes and parameters, as dicts.

Per experiment directory (what `wenet_eff.bin.train` and the recipes' stages write):
  - `train.yaml` (required): parameters total / active of the architecture; the compression
    settings (`compress.quant`, `compress.sparsity`); `train.init_checkpoint`;
  - the checkpoint (the newest `avg_*.pt`, else `final.pt`) and `packed.pt` with its
    `packed.pt.size.json` (bin.pack): the weights' size as stored (float32 without a pack)
    and the size on disk of the file that is served;
  - `folded.pt.sparsity.json` (bin.masks fold): zeros in the masked layers, N:M check;
  - `<test_set>/<mode>/wer` at any depth (`test/attention_rescoring/wer`,
    `test/chunk16/ctc_greedy_search/wer`): the `Overall ->` line of tools/compute_wer.py;
  - `runtime_<precision>/<test_set>/chunk<N>/{rtf.json,wer}` (decoder_main, recipe stage 7).
Benchmark JSON: `bin.benchmark runtime_rtf`, `decode_rtf` and `moe_rtf`.

A missing file is a missing number; an unreadable one is reported on stderr and left out.

Result JSON (what RESULTS.md is rendered from): every JSON that a table tool or a benchmark
writes through `wenet_eff.bench.common.write_json`, recognised by its top-level keys
(`RESULT_KINDS`) and carrying its `provenance` (`read_result` refuses one without).
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path

from wenet_eff.model import DECODE_METHODS

_OVERALL = re.compile(
    r"^Overall -> (?P<wer>\S+) % N=(?P<n>\d+) C=(?P<c>\d+) S=(?P<s>\d+) D=(?P<d>\d+) I=(?P<i>\d+)"
)
# moe_rtf's RTF keys other than streaming_chunk<N> (CTC greedy, chunk by chunk)
_MOE_RTF_MODES = {"ctc_greedy": "ctc_greedy_search", "attention_rescoring": "attention_rescoring"}


# kind: the top-level keys that tell it (the first kind whose keys are all present wins)
RESULT_KINDS = {
    "tables": {"model_table", "compression_table", "selection"},
    "wer_table": {"exp_dir", "results"},
    "runtime_table": {"runtime_rows"},
    "compress_table": {"qat_rows", "modes"},
    "sparse_table": {"sparse_rows", "modes"},
    "adapt_table": {"adapt_rows", "modes"},
    "runtime_rtf": {"rows", "ratios"},
    "decode_rtf": {"results", "random_weights", "batch_size"},
    "streaming_latency": {"results", "piece_ms"},
    "moe_rtf": {"models", "dispatch"},
    "compress_size": {"results", "vocab_size", "overrides"},
    "monitor_overhead": {"overhead_by_interval"},
    "train_vs_wenet": {"sides", "ratios", "wenet_commit"},
    "train_throughput": {"frames_per_second"},
    "model_info": {"breakdown", "flops_per_audio_second"},
    "runtime_lm": {"load", "search", "ngrams"},
    "serve": {"serve_runs", "capacity"},
}
PROVENANCE_KEYS = ("command", "commit", "dirty", "date", "cpu", "isa", "cores", "threads")


def warn(message: str) -> None:
    print(f"tables: {message}", file=sys.stderr)


def parse_overall(path: str | os.PathLike) -> dict[str, float | int]:
    """{"wer", "n", "c", "s", "d", "i"} from the `Overall ->` line of a compute_wer.py output."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = _OVERALL.match(line)
            if match:
                fields = match.groupdict()
                return {"wer": float(fields.pop("wer")), **{k: int(v) for k, v in fields.items()}}
    raise ValueError(f"{path}: no 'Overall -> X % N=.. C=.. S=.. D=.. I=..' line")


def _try_wer(path: Path) -> dict | None:
    try:
        return parse_overall(path)
    except (OSError, ValueError) as exc:
        warn(f"{exc}; left out")
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warn(f"{path}: {exc}; left out")
        return None


def find_wers(exp: Path) -> dict[str, dict[str, dict]]:
    """{test_set: {mode: counts}} from every EXP/<test_set>/<mode>/wer; the test set is the
    path between the experiment and the mode directory (`test`, `test/chunk16`)."""
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(exp.rglob("wer")):
        if path.parent.name not in DECODE_METHODS or path.parent.parent == exp:
            continue
        counts = _try_wer(path)
        if counts is not None:
            test_set = path.parent.parent.relative_to(exp).as_posix()
            found.setdefault(test_set, {})[path.parent.name] = counts
    return found


def measurement(
    source: str, engine: str, file: str, model: str, precision: str, chunk: int, mode: str,
    rtf: float, threads: int | None, **extra,
) -> dict:  # fmt: skip
    """One RTF measurement, the same fields whatever wrote it (plus source-specific extras)."""
    return {"source": source, "engine": engine, "file": file, "model": model,
            "precision": precision, "chunk": chunk, "mode": mode, "rtf": rtf,
            "threads": threads, **extra}  # fmt: skip


def runtime_results(exp: Path) -> list[dict]:
    """Rows of decoder_main runs: EXP/runtime_<precision>/<test_set>/chunk<N>/{rtf.json,wer}."""
    rows = []
    for rtf_path in sorted(exp.glob("runtime_*/**/chunk*/rtf.json")):
        chunk_dir = rtf_path.parent
        runtime_dir = next(p for p in chunk_dir.parents if p.parent == exp)
        chunk = chunk_dir.name.removeprefix("chunk")
        rtf = _read_json(rtf_path)
        if not re.fullmatch(r"-?\d+", chunk) or rtf is None or "rtf" not in rtf:
            continue
        wer = _try_wer(chunk_dir / "wer") if (chunk_dir / "wer").exists() else None
        rows.append(
            {
                "runtime_dir": str(runtime_dir),
                "precision": runtime_dir.name.removeprefix("runtime_"),
                "test_set": chunk_dir.parent.relative_to(runtime_dir).as_posix(),
                "chunk": int(chunk),
                "wer": wer and wer["wer"],
                **rtf,
            }
        )
    return rows


def decoder_main_rtfs(exp: Path, runtime: list[dict]) -> list[dict]:
    """One RTF per (precision, chunk) over all its test sets: decode time / audio time."""
    out = []
    for precision, chunk in dict.fromkeys((r["precision"], r["chunk"]) for r in runtime):
        rows = [r for r in runtime if (r["precision"], r["chunk"]) == (precision, chunk)]
        audio = sum(r.get("audio_seconds", 0.0) for r in rows)
        rtf = sum(r["rtf"] * r.get("audio_seconds", 0.0) for r in rows) / audio if audio else None
        out.append(
            measurement(
                "decoder_main", "cpp", str(exp / f"runtime_{precision}"), exp.name, precision,
                chunk, "attention_rescoring", rtf if audio else rows[0]["rtf"],
                rows[0].get("threads"), test_sets=[r["test_set"] for r in rows],
            )
        )  # fmt: skip
    return out


def count_params(cfg) -> dict[str, int]:
    """`ASRModel.num_params()` of the architecture of `cfg` (compression off: no quantizer
    scales or router scores), built on the meta device (no memory, no CMVN file read)."""
    import torch

    import wenet_eff

    cfg = copy.deepcopy(cfg)
    cfg.cmvn.file = ""
    cfg.compress.quant.enabled = False
    cfg.compress.sparsity.enabled = False
    with torch.device("meta"):
        return wenet_eff.build_model(cfg).num_params()


def describe_compression(cfg) -> tuple[str, str]:
    """(weights, sparsity) labels of an experiment's compression, e.g. ("4-bit sym channel",
    "2:4 SR-STE"); ("float32", "") for an uncompressed one."""
    q, s = cfg.compress.quant, cfg.compress.sparsity
    weights = "float32"
    if q.enabled:
        kind = "binary" if q.bits == 1 else ("sym" if q.symmetric else "asym")
        gran = f"subchannel/{q.block_size}" if q.granularity == "subchannel" else q.granularity
        parts = [f"{q.bits}-bit", kind, gran]
        parts += [f"clip {q.clip}"] if q.clip != "none" else []
        parts += [q.estimator] if q.estimator != "ste" else []
        parts += ["learnable scale"] if q.learnable_scale else []
        parts += ["native int"] if q.native_int else []
        parts += [f"({', '.join(q.bits_by_role)})"] if q.bits_by_role else []
        weights = " ".join(parts)
    sparsity = ""
    if s.enabled and s.method == "nm":
        trainer = "STEP" if cfg.optim.name == "step" else ("SR-STE" if s.decay else "STE")
        sparsity = f"{s.n}:{s.m} {trainer}"
    elif s.enabled and s.method == "magnitude":
        sparsity = f"magnitude {s.sparsity:.0%}"
    elif s.enabled:
        sparsity = f"S3-Router keep {s.keep_ratio:g}"
    return weights, sparsity


def _checkpoint(exp: Path, name: str) -> Path | None:
    if name:
        return exp / name if (exp / name).is_file() else None
    averaged = sorted(exp.glob("avg_*.pt"), key=lambda p: p.stat().st_mtime)
    if averaged:
        return averaged[-1]
    return exp / "final.pt" if (exp / "final.pt").is_file() else None


def _packed(exp: Path) -> dict | None:
    """packed.pt's size on disk, and from bin.pack's size JSON its packed and float32 weight
    bytes and their ratio (None where the JSON is missing)."""
    if not (exp / "packed.pt").is_file():
        return None
    size_json = exp / "packed.pt.size.json"
    report = _read_json(size_json) if size_json.exists() else None
    total = report["total"] if report else {}
    return {
        "path": str(exp / "packed.pt"),
        "bytes": (exp / "packed.pt").stat().st_size,
        "packed_bytes": total.get("packed_bytes"),
        "float32_bytes": total.get("float32_bytes"),
        "ratio": total.get("ratio"),
    }


def collect_experiment(exp_dir: str, checkpoint: str = "") -> dict:
    """Everything known about one experiment directory (see the module docstring).

    Args:
        exp_dir: the directory; an error naming it when it does not exist or has no train.yaml.
        checkpoint: the checkpoint's file name (default: the newest avg_*.pt, else final.pt).
    """
    import wenet_eff

    exp = Path(exp_dir)
    if not exp.is_dir():
        raise FileNotFoundError(f"{exp_dir}: no such experiment directory")
    if not (exp / "train.yaml").is_file():
        raise FileNotFoundError(
            f"{exp_dir}: no train.yaml (not an experiment directory of wenet_eff.bin.train)"
        )
    cfg = wenet_eff.load_config(exp / "train.yaml")
    weights, sparsity = describe_compression(cfg)
    ckpt = _checkpoint(exp, checkpoint)
    packed = _packed(exp)
    folded = None
    if (exp / "folded.pt.sparsity.json").exists():
        folded = (_read_json(exp / "folded.pt.sparsity.json") or {}).get("total")
    runtime = runtime_results(exp)
    params = count_params(cfg)
    # the weights as stored: bin.pack's packed bytes, else float32 (4 bytes a parameter); the
    # file that is served (packed.pt, else the checkpoint) also holds buffers and metadata
    size = (packed["packed_bytes"] or packed["bytes"]) if packed else 4 * params["total"]
    ckpt_bytes = ckpt.stat().st_size if ckpt else None
    return {
        "exp_dir": exp_dir,
        "name": exp.name,
        "model": cfg.model.name,
        "params": params,
        "weights": weights,
        "sparsity": sparsity,
        "compressed": weights != "float32" or bool(sparsity),
        "init_checkpoint": cfg.train.init_checkpoint,
        "checkpoint": {"path": str(ckpt), "bytes": ckpt_bytes} if ckpt else None,
        "packed": packed,
        "folded_sparsity": folded,
        "size_bytes": size,
        "file_bytes": packed["bytes"] if packed else ckpt_bytes,
        "wer": find_wers(exp),
        "runtime": runtime,
        "rtf": decoder_main_rtfs(exp, runtime),
    }


def result_kind(data) -> str | None:
    """The kind of a result JSON's content (a key of RESULT_KINDS), None if none fits."""
    if not isinstance(data, dict):
        return None
    return next((kind for kind, keys in RESULT_KINDS.items() if keys <= data.keys()), None)


def read_result(path: str | os.PathLike) -> tuple[str, dict]:
    """(kind, content) of a result JSON; a ValueError naming the file when it is not JSON, of
    no known kind, or without its provenance (written before results recorded it)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc
    kind = result_kind(data)
    if kind is None:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{path}: not a result JSON of a known kind (top-level keys {keys}); the kinds are "
            f"{', '.join(RESULT_KINDS)}"
        )
    prov = data.get("provenance")
    missing = [k for k in PROVENANCE_KEYS if not isinstance(prov, dict) or k not in prov]
    if missing:
        raise ValueError(
            f"{path}: a {kind} JSON without provenance ({', '.join(missing)} missing): its "
            "figures cannot be cited; rerun the command that wrote it (its JSON writer records "
            "the command, commit, date and machine)"
        )
    return kind, data


def read_benchmark(path: str) -> list[dict]:
    """The RTF measurements (`measurement`) of a bin.benchmark JSON: runtime_rtf (per model,
    precision, chunk, engine), decode_rtf (per decoding mode) or moe_rtf (per model and mode)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    threads = data.get("threads")
    kind = result_kind(data)
    if kind == "runtime_rtf":
        return [
            measurement("runtime_rtf", r["engine"], path, r["model"], r["precision"], r["chunk"],
                        "attention_rescoring", r["rtf"], threads, wer=r["wer"])
            for r in data["rows"]
        ]  # fmt: skip
    if kind == "decode_rtf":
        return [
            measurement("decode_rtf", "eager", path, data["model"], "fp32", -1, r["stage"],
                        r["rtf"], threads, params=data["params"],
                        random_weights=data["random_weights"])
            for r in data["results"]
            if r["stage"] in DECODE_METHODS
        ]  # fmt: skip
    if kind == "moe_rtf":  # random weights
        out = []
        for m in data["models"]:
            for key, rtf in m["rtf"].items():
                streaming = key.startswith("streaming_chunk")
                mode = "ctc_greedy_search" if streaming else _MOE_RTF_MODES.get(key)
                chunk = int(key.removeprefix("streaming_chunk")) if streaming else -1
                if mode:
                    out.append(
                        measurement("moe_rtf", "eager", path, m["model"], "fp32", chunk, mode,
                                    rtf, threads, params=m["params"], random_weights=True)
                    )  # fmt: skip
        return out
    raise ValueError(
        f"{path}: not a JSON of bin.benchmark runtime_rtf, decode_rtf or moe_rtf "
        f"(top-level keys {sorted(data)})"
    )
