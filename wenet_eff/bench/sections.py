"""Markdown tables of the result JSON kinds, one renderer per kind.

The tools that write a kind print its table with the same renderer (tools/wer_table.py,
tools/runtime_table.py, tools/compress_table.py, tools/sparse_table.py, the mini recipe's
local/adapt_table.py), and RESULTS.md renders every kept JSON with it
(`wenet_eff.bench.results_md`), so a table reads the same wherever it appears and every figure
comes from the JSON.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def md_table(header: Sequence[str], align: str, rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; `align` has one letter per column: l(eft), r(ight) or c(entre)."""
    rule = {"l": "---", "r": "---:", "c": ":-:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _f(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _chunk(chunk: int) -> str:
    return "full" if chunk < 0 else str(chunk)


def _rel(wer: float, base: float) -> str:
    return f"{wer:.2f} ({100 * (wer / base - 1) if base else 0.0:+.1f} %)"


def wer_table(data: dict) -> str:
    """tools/wer_table.py: rows decoding modes, columns test sets, cells WER %."""
    results = data["results"]
    sets = list(results)
    modes = list(dict.fromkeys(m for s in sets for m in results[s]))
    rows = [[m, *(_f(results[s].get(m, {}).get("wer"), ".2f") for s in sets)] for m in modes]
    return md_table(["mode", *(f"{s} WER %" for s in sets)], "l" + "r" * len(sets), rows)


def runtime_table(data: dict) -> str:
    """tools/runtime_table.py: decoder_main's WER and RTF per model dir, test set, LM and chunk;
    at full context Python's WER of the same decode and the share of identical transcripts."""
    rows = [
        [r["runtime_dir"], r["test_set"], "yes" if r.get("lm") else "no",
         "full" if r["chunk"] < 0 else f"{r['chunk']} ({r['num_left_chunks']})",
         f"{r['wer']:.2f}", _f(r.get("python_wer"), ".2f"),
         _f(None if r.get("identical") is None else 100 * r["identical"], ".1f"),
         f"{r['rtf']:.4f}", r["threads"], f"{r['utterances']} ({r['skipped']} skipped)"]
        for r in data["runtime_rows"]
    ]  # fmt: skip
    header = ["model dir", "test set", "LM", "chunk (left)", "WER %", "Python WER %",
              "identical to Python %", "RTF", "threads", "utterances"]  # fmt: skip
    return md_table(header, "llllrrrrrr", rows)


def compress_table(data: dict) -> str:
    """tools/compress_table.py: QAT runs' packed size and WER relative to the float run (row 1);
    where stage 11 ran them in the C++ runtime, its directory size, kernel path, WER, agreement
    with the eager decode of the same model (identical transcripts, WER difference) and RTF."""
    rows, modes = data["qat_rows"], data["modes"]
    base = rows[0]["wer"]
    runtime = any(r.get("runtime") for r in rows)
    body = []
    for r in rows:
        cells = [r["exp"], r["quant"], f"{r['bytes'] / 1e6:.2f}", f"{r['ratio']:.2f}",
                 *(_rel(r["wer"][m], base[m]) for m in modes)]  # fmt: skip
        if runtime:
            rt = r.get("runtime") or {}
            identical = rt.get("identical")
            cells += [_f(rt["bytes"] / 1e6 if rt else None, ".2f"),
                      rt.get("kernel_path", ""), _f(rt.get("wer"), ".2f"),
                      _f(None if identical is None else 100 * identical, ".1f"),
                      _f(rt.get("wer_diff"), "+.2f"), _f(rt.get("rtf"), ".4f")]  # fmt: skip
        body.append(cells)
    header = [
        "experiment",
        "weights",
        "size MB",
        "x smaller",
        *(f"{m} WER % (rel.)" for m in modes),
    ]
    if runtime:
        header += ["runtime dir MB", "C++ kernel path", "C++ attention_rescoring WER %",
                   "identical to eager %", "C++ - eager WER", "C++ RTF"]  # fmt: skip
    return md_table(header, "llrr" + "r" * len(modes) + "rlrrrr" * runtime, body)


def sparse_table(data: dict) -> str:
    """tools/sparse_table.py: zeros, N:M check, packed size, WER relative to the control (row 1)."""
    rows, modes = data["sparse_rows"], data["modes"]
    base = rows[0]["wer"]
    body = []
    for r in rows:
        nm = "" if r["nm_ok"] is None else ("yes" if r["nm_ok"] else "NO")
        method = r["method"] + (f", switch at update {r['switch']}" if r["switch"] else "")
        packed = ""
        if r.get("packed_bytes"):
            packed = f"{r['packed_bytes'] / 1e6:.2f} ({r['packed_ratio']:.2f}x smaller)"
        body.append([os.path.basename(r["exp"]), method, f"{r['sparsity']:.1%}", nm, packed,
                     *(_rel(r["wer"][m], base[m]) for m in modes)])  # fmt: skip
    header = ["experiment", "method", "zeros in masked layers", "N:M exact", "packed MB",
              *(f"{m} WER % (rel.)" for m in modes)]  # fmt: skip
    return md_table(header, "llrcr" + "r" * len(modes), body)


def adapt_table(data: dict) -> str:
    """local/adapt_table.py (mini): per held-out voice, base / fine-tuned / base + mask."""
    full, modes = data["checkpoint_bytes"], data["modes"]
    body = []
    for r in data["adapt_rows"]:
        size = r["domain_bytes"]
        ratio = f"{full / size:.1f}x" if size and size != full else "1x" if size else ""
        shown = f"{size / 1e6:.2f} MB" if size >= 1e5 else (f"{size / 1e3:.1f} kB" if size else "-")
        body.append([r["voice"], r["model"], *(f"{r['wer'][m]:.2f}" for m in modes), shown, ratio])
    header = ["held-out voice", "model", *(f"{m} WER %" for m in modes), "per-domain file",
              "x smaller than checkpoint"]  # fmt: skip
    text = md_table(header, "ll" + "r" * len(modes) + "rr", body)
    if data["mask_iou"]:
        iou = data["mask_iou"]
        text += (
            f"\nMask similarity between the voices' masks: IoU of kept weights "
            f"{iou['kept_iou']:.4f}, IoU of removed weights {iou['removed_iou']:.4f} "
            "(two independent random 10 % removals would give about 0.053)\n"
        )
    return text


def compress_size(data: dict) -> str:
    """bin.benchmark compress_size: float32 and packed bytes per model and config."""
    body = []
    for r in data["results"]:
        mb = {
            k: f"{r[k] / 1e6:.2f}" for k in ("float32_bytes", "packed_bytes", "edge_packed_bytes")
        }
        body.append(
            [r["model"], r["compress"], f"{r['params'] / 1e6:.1f}", mb["float32_bytes"],
             mb["packed_bytes"], f"{r['ratio']:.2f}", f"{r['without_edge_ratio']:.2f}",
             f"{mb['edge_packed_bytes']} ({r['edge_bits']}-bit)", f"{r['main_bits_ratio']:.2f}"]
        )  # fmt: skip
    overrides = f", overrides {' '.join(data['overrides'])}" if data["overrides"] else ""
    return (
        f"Vocabulary {data['vocab_size']}{overrides}. Without edge: the model less the front-end "
        "convolution, token embeddings and output layers (edge MB: their packed size); b-bit "
        "layers: the layers at the config's main bit width alone.\n\n"
    ) + md_table(
        ["model", "config", "params M", "float32 MB", "packed MB", "x smaller", "without edge",
         "edge MB", "b-bit layers alone"],
        "llrrrrrrr", body,
    )  # fmt: skip


def model_info(data: dict) -> str:
    """bin.model_info: parameters per module group, expert-parallel shares, FLOPs."""
    p, f = data["params"], data["flops_per_audio_second"]
    text = (
        f"`{data['model']}`: {p['total']:,} parameters, {p['active']:,} active per frame, "
        f"vocabulary {data['vocab_size']}, {data['moe_layers']} MoE layers; GFLOPs per second "
        f"of audio: encoder {f['encoder'] / 1e9:.2f}, CTC {f['ctc'] / 1e9:.3f}.\n\n"
    )
    rows = [[g, f"{v['total']:,}", f"{v['active']:,}"] for g, v in data["breakdown"].items()]
    text += md_table(["module", "total", "active"], "lrr", rows)
    if data["expert_parallel"]:
        rows = [
            [r["size"], f"{r['params_per_rank']:,}", f"{r['train_bytes'] / 1e9:.2f}"]
            for r in data["expert_parallel"]
        ]
        header = ["train.expert_parallel", "parameters per rank", "fp32 + Adam state GB"]
        text += "\n" + md_table(header, "rrr", rows)
    return text


def moe_rtf(data: dict) -> str:
    """bin.benchmark moe_rtf: RTF per model and decoding (ratio to the first model), dispatch."""
    keys = list(data["models"][0]["rtf"])
    body = [
        [m["model"], f"{m['params']['total'] / 1e6:.1f}", f"{m['params']['active'] / 1e6:.1f}",
         f"{m['gflops_per_audio_second']:.2f} ({m['flops_ratio']:.2f}x)",
         *(f"{m['rtf'][k]:.4f} ({m['rtf_ratio'][k]:.2f}x)" for k in keys)]
        for m in data["models"]
    ]  # fmt: skip
    text = (
        f"Random weights, batch 1; fp32 GEMM peak {data['gemm_peak_gflops']:.0f} GFLOP/s, "
        f"memory read {data['read_bandwidth_gb_s']:.1f} GB/s.\n\n"
    ) + md_table(
        ["model", "params M", "active M", "GFLOPs per audio s", *(f"{k} RTF" for k in keys)],
        "lrrr" + "r" * len(keys), body,
    )  # fmt: skip
    rows = [
        [f"{d['dim']} x {d['units']}", f"{d['ours_infer_s'] * 1e3:.2f}",
         f"{d['scan_infer_s'] * 1e3:.2f}", f"{d['all_experts_infer_s'] * 1e3:.2f}",
         f"{d['matmul_floor_s'] * 1e3:.2f}", f"{d['train_speedup']:.2f}"]
        for d in data["dispatch"]
    ]  # fmt: skip
    header = ["MoE layer (dim x units)", "ours ms", "per-expert scan ms", "every expert ms",
              "matmul floor ms", "training: scan / ours"]  # fmt: skip
    text += "\nDispatch, one layer, inference unless stated:\n\n" + md_table(header, "lrrrrr", rows)
    return text + ("\n" + moe_streams(data) if data.get("streams") else "")


def moe_streams(data: dict) -> str:
    """moe_rtf --streams: batched streaming steps per model and B, ratios to the first model."""
    s = data["streams"]
    rows = [
        [r["model"], r["chunk"], r["streams"], f"{r['ms_per_step']:.1f}",
         f"{r['ms_per_stream_chunk']:.2f}", f"{r['gflop_per_step']:.1f}",
         f"{r['experts_touched_mean']:.2f} / {r['n_expert']} (min {r['experts_touched_min']})"
         if r["n_expert"] else "", f"{r['time_ratio']:.2f}",
         f"{min(r['round_time_ratio']):.2f}-{max(r['round_time_ratio']):.2f}",
         f"{r['flops_ratio']:.2f}", f"{r['time_over_flops']:.2f}"]
        for r in s
    ]  # fmt: skip
    header = ["model", "chunk", "streams B", "encoder ms / step", "ms / stream chunk",
              "GFLOP / step", "experts / layer", "time x", "time x per round", "FLOPs x",
              "time x / FLOPs x"]  # fmt: skip
    return (
        f"Batched streaming steps (the export's EncoderChunkBatch, eager): B streams at chunk "
        f"positions 0..{s[0]['left_chunks'] + 1}, {s[0]['left_chunks']} left chunks of cache, "
        f"one forward per step; median over {len(s[0]['round_ms'])} rounds, the models "
        "interleaved; ratios to the first model (MoE at a serving batch, target "
        "time x / FLOPs x <= 1.1):\n\n"
    ) + md_table(header, "lrrrrrrrrrr", rows)


def decode_rtf(data: dict) -> str:
    """bin.benchmark decode_rtf: seconds and RTF per decoding stage."""
    rows = [[r["stage"], f"{r['seconds']:.3f}", f"{r['rtf']:.4f}"] for r in data["results"]]
    weights = ", random weights" if data["random_weights"] else ""
    return (
        f"`{data['model']}` ({data['params']['total'] / 1e6:.1f}M parameters), batch "
        f"{data['batch_size']} x {data['utterance_seconds']:g} s, beam {data['beam_size']}"
        f"{weights}.\n\n"
    ) + md_table(["stage", "seconds", "RTF"], "lrr", rows)


def runtime_rtf(data: dict) -> str:
    """bin.benchmark runtime_rtf: RTF and WER per model, precision, chunk and engine; the C++
    rows' kernel path, directory size and memory; speed-ups over fp32; MoE overhead."""
    ratios = data["ratios"]
    engines = {(r["model"], r["precision"], r["chunk"]): r for r in ratios
               if r["kind"] == "engines"}  # fmt: skip
    body = []
    for r in data["rows"]:
        key = (r["model"], r["precision"], r["chunk"])
        ratio = engines.get(key, {}) if r["engine"] == "cpp" else {}
        body.append(
            [r["model"], r["precision"], _chunk(r["chunk"]), r["engine"],
             r.get("kernel_path", ""), f"{r['rtf']:.4f}", _f(r.get("encoder_rtf"), ".4f"),
             f"{r['wer']:.2f}", _f(r.get("identical"), ".0%"), _f(r.get("wer_diff"), "+.2f"),
             _f(ratio.get("cpp_over_eager"), ".2f"), _f(ratio.get("cpp_over_onnx"), ".2f")]
        )  # fmt: skip
    header = ["model", "precision", "chunk", "engine", "kernel path", "RTF", "encoder RTF",
              "WER %", "identical to eager", "WER diff", "C++ / eager",
              "C++ / onnxruntime"]  # fmt: skip
    cpu = data.get("environment", {}).get("cpu_features", "")
    out = (
        f"{data['utterances']} utterances ({data['audio_seconds']:.0f} s of audio), "
        f"{data['mode']}, chunk {data['chunk_size']} with {data['num_left_chunks']} left chunks, "
        f"fastest of {data['repeats']} passes, {data['threads']} thread(s)"
        + (f"; CPU features: {cpu}" if cpu else "")
        + ".\n\n"
        + md_table(header, "llllrrrrrrrr", body)
    )
    sizes = [r for r in data["rows"] if r["engine"] == "cpp" and "dir_mb" in r and r["chunk"] < 0]
    if sizes:
        fp32 = {r["model"]: r["dir_mb"] for r in sizes if r["precision"] == "fp32"}
        body = [
            [r["model"], r["precision"], r["kernel_path"],
             ", ".join(f"{k} {v}" for k, v in sorted(r["layer_paths"].items())),
             f"{r['dir_mb']:.2f}", _f(fp32[r["model"]] / r["dir_mb"] if r["model"] in fp32
                                      else None, ".2f"), _f(r.get("pack_mb"), ".2f"),
             _f(r["dir_mb"] / r["pack_mb"] if r.get("pack_mb") else None, ".2f"),
             f"{r['rss_mb']:.0f}", _f(r.get("encoder_rel_error"), ".1e")]
            for r in sizes
        ]  # fmt: skip
        header = ["model", "precision", "kernel path", "layers per path", "runtime dir MB",
                  "x smaller than fp32", "bin.pack MB", "runtime dir / bin.pack",
                  "RSS after load MB", "encoder output vs eager (rel.)"]  # fmt: skip
        out += "\n" + md_table(header, "llllrrrrrr", body)
    speedups = [r for r in ratios if r["kind"] in ("precision", "int8")]  # int8: older JSON
    if speedups:
        body = [
            [r["model"], r.get("precision", "int8"), _chunk(r["chunk"]), r["engine"],
             f"{r['speedup']:.2f}x", _f(r.get("encoder_speedup"), ".2f"),
             f"{100 * r['wer_rel_change']:+.1f} %"]
            for r in speedups
        ]  # fmt: skip
        header = ["model", "precision", "chunk", "engine", "speed-up over fp32",
                  "encoder alone", "WER change (relative)"]  # fmt: skip
        out += "\n" + md_table(header, "llllrrr", body)
    flops = [r for r in ratios if r["kind"] == "flops"]
    if flops:
        body = [
            [r["model"], r["reference"], r["precision"], _chunk(r["chunk"]), r["engine"],
             f"{r['rtf_ratio']:.2f} ({r['timed']})", f"{r['flops_ratio']:.2f}",
             f"{100 * r['overhead']:+.1f} %"]
            for r in flops
        ]  # fmt: skip
        header = ["model", "vs", "precision", "chunk", "engine", "time ratio (timed)",
                  "active FLOPs ratio", "overhead beyond active FLOPs"]  # fmt: skip
        out += "\n" + md_table(header, "lllllrrr", body)
    return out


def streaming_latency(data: dict) -> str:
    """bin.benchmark streaming_latency: compute per chunk, first-partial and final latency."""
    body = []
    for r in data["results"]:
        first, final = r["first_partial_ms"], r["final_ms"]
        compute = f"{r['chunk_compute_ms']['mean']:.1f}" if r["chunk"] > 0 else "-"
        body.append([_chunk(r["chunk"]), _f(r["chunk_ms"], ".0f") or "-", compute,
                     f"{first['p50']:.0f} / {first['p90']:.0f}",
                     f"{final['p50']:.0f} / {final['p90']:.0f}", f"{r['rtf']:.4f}"])  # fmt: skip
    weights = ", random weights" if data["random_weights"] else ""
    header = ["chunk", "chunk ms", "compute per chunk ms", "first partial ms (p50 / p90)",
              "final ms (p50 / p90)", "RTF"]  # fmt: skip
    return (
        f"`{data['model']}`, {data['utterances']} utterances from "
        f"{data['data_list'] or 'noise'}, {data['piece_ms']} ms pieces, beam "
        f"{data['beam_size']}{weights}.\n\n"
    ) + md_table(header, "lrrrrr", body)


def monitor_overhead(data: dict) -> str:
    """bin.benchmark monitor_overhead: the stability monitor's cost per update interval."""
    intervals = list(data["overhead_by_interval"])
    row = [f"{data['seconds_plain_step']:.3f}", f"{data['seconds_monitored_step']:.3f}",
           *(f"{data['overhead_by_interval'][k]:.2%}" for k in intervals)]  # fmt: skip
    return (
        f"`{data['model']}`, batch {data['batch_size']} x {data['frames']} frames, "
        f"{data['monitored_layers']} weight layers and {data['attention_layers']} attention "
        "layers monitored.\n\n"
    ) + md_table(
        ["plain step s", "monitored step s", *(f"overhead, every {k}" for k in intervals)],
        "r" * (2 + len(intervals)), [row],
    )  # fmt: skip


def train_throughput(data: dict) -> str:
    """bin.benchmark train_throughput: seconds per update and frames per second."""
    row = [data["model"], f"{data['params']['total'] / 1e6:.1f}", data["dtype"],
           f"{data['batch_size']} x {data['frames']}", f"{data['seconds_per_step']:.3f}",
           f"{data['min_seconds_per_step']:.3f}", f"{data['frames_per_second']:.0f}"]  # fmt: skip
    header = ["model", "params M", "dtype", "batch x frames", "s / update", "min s / update",
              "frames / s"]  # fmt: skip
    return md_table(header, "lrlrrrr", [row])


def train_vs_wenet(data: dict) -> str:
    """bin.benchmark train_throughput --wenet_dir: our training step against WeNet's model of
    the same config and weights, one row per side, the ratios ours / WeNet's."""
    check = data["loss_check"]
    rows = [
        [name, f"{st['median_seconds']:.2f}", f"{st['min_seconds']:.2f}",
         *(f"{st['phase_ms'][p] / 1e3:.2f}" for p in ("forward", "backward", "optimizer")),
         f"{st['frames_per_second']:.0f}", f"{st['median_cpu_seconds']:.1f}",
         data["optimizers"][side]]
        for side, name, st in ((s, n, data["sides"][s]) for s, n in (("ours", "ours"),
                                                                       ("wenet", "WeNet")))
    ]  # fmt: skip
    header = ["code", "median s / step", "min s / step", "forward s", "backward s",
              "optimizer s", "frames / s", "CPU s / step", "optimizer"]  # fmt: skip
    ratios = data["ratios"]
    return (
        f"`{data['model']}` ({data['params']['total'] / 1e6:.1f}M parameters), {data['dtype']}, "
        f"batch {data['batch_size']} x {data['frames']} frames, {data['tokens']} tokens each, "
        f"{data['repeats']} interleaved rounds; WeNet `{data['wenet_commit'] or '?'}`. The same "
        f"weights' loss (eval, full context): ours {check['ours']:.6g}, WeNet's "
        f"{check['wenet']:.6g}. Phases: medians.\n\n"
        + md_table(header, "lrrrrrrrl", rows)
        + f"\nours / WeNet: **{ratios['median']:.3f}** (median step), "
        f"{ratios['min']:.3f} (fastest step), {ratios['cpu_median']:.3f} (CPU seconds, "
        "median: the process's threads together, without the time spent descheduled)\n"
    )


def runtime_lm(data: dict) -> str:
    """bin.benchmark runtime_lm: loading an ARPA LM (time, RSS) and the C++ prefix beam search's
    cost with the LM and with context-biasing phrases."""
    mib, ld = 1 / 2**20, data["load"]
    load = [
        [name, f"{ld[f'{key}_seconds']:.2f}", f"{ld[f'{key}_cpu_seconds']:.2f}",
         f"{ld[f'{key}_rss_bytes'] * mib:.1f}", f"{ld[f'{key}_rss_bytes'] / data['ngrams']:.1f}"]
        for name, key in (("C++", "cpp"), ("Python", "python"))
        if f"{key}_seconds" in ld
    ]  # fmt: skip
    search = [
        [name, f"{s['cpu_ms_per_utt']:.2f}", f"{s['cpu_rtf']:.5f}", f"{s['cpu_vs_plain']:.2f}",
         f"{s['ms_per_utt']:.2f}"]
        for name, s in data["search"].items()
    ]  # fmt: skip
    return (
        f"{data['order']}-gram LM, {data['ngrams']:,} n-grams ({data['arpa_bytes'] * mib:.0f} MiB "
        f"ARPA); C++ tables {ld['cpp_table_bytes'] * mib:.1f} MiB.\n\n"
        + md_table(["reader", "load s", "CPU s", "RSS MiB", "bytes / n-gram"], "lrrrr", load)
        + f"\nC++ prefix beam search, beam {data['beam_size']}, {data['utterances']} utterances of "
        f"{data['frames_per_utt']:.0f} frames, {data['phrases']} context phrases.\n\n"
        + md_table(["setup", "CPU ms / utt", "CPU RTF", "x plain", "wall ms / utt"], "lrrrr",
                   search)
    )  # fmt: skip


def serve(data: dict) -> str:
    """bin.benchmark serve: partial-result latency of N concurrent streams through the WebSocket
    server, batched across streams and not; capacity; encoder milliseconds per step by batch."""
    rows = [
        [r["model"], r["batch_max"], r["streams"], f"{r['latency_ms']['p50']:.0f}",
         f"{r['latency_ms']['p95']:.0f}", f"{r['latency_ms']['p99']:.0f}",
         f"{r['audio_s'] / r['wall_s']:.1f}", f"{r['utterances']}/{r['wrong']}/{r['failed']}",
         f"{r['rss_kib']['start'] / 1024:.0f} / {r['rss_kib']['peak'] / 1024:.0f} / "
         f"{r['rss_kib']['after'] / 1024:.0f}"]
        for r in data["serve_runs"]
    ]  # fmt: skip
    capacity = [
        [model, *(caps.get(k, "") for k in ("1", max(caps, key=int))),
         _f(caps[max(caps, key=int)] / caps["1"] if caps.get("1") else None, ".1f")]
        for model, caps in data["capacity"].items()
    ]  # fmt: skip
    # batch sizes in powers of two (1, 2-3, 4-7, ...): steps, stream chunks, seconds
    steps: dict[tuple[str, int], dict[int, list[float]]] = {}
    for r in data["serve_runs"]:
        per = steps.setdefault((r["model"], r["batch_max"]), {})
        for b, f in r["encoder_by_batch"].items():
            acc = per.setdefault(1 << (int(b).bit_length() - 1), [0, 0, 0.0])
            acc[0] += f["steps"]
            acc[1] += f["steps"] * int(b)
            acc[2] += f["seconds"]
    encoder = [
        [model, batch_max, str(lo) if lo == 1 else f"{lo}-{2 * lo - 1}", n, f"{c / n:.1f}",
         f"{1000 * s / n:.2f}", f"{1000 * s / c:.2f}"]
        for (model, batch_max), per in steps.items()
        for lo, (n, c, s) in sorted(per.items())
    ]  # fmt: skip
    # where the server's time went, in seconds per second of the run (1.0: a core's worth)
    work = []
    for r in data["serve_runs"]:
        by_batch = r["encoder_by_batch"].values()
        seconds = (sum(f["seconds"] for f in by_batch), r["seconds"]["feed"],
                   r["seconds"]["search"], r["seconds"]["finish"])  # fmt: skip
        work.append([r["model"], r["batch_max"], r["streams"],
                     f"{r['chunks'] / max(1, sum(f['steps'] for f in by_batch)):.1f}",
                     *(f"{s / r['wall_s']:.2f}" for s in seconds)])  # fmt: skip
    mode = "in real time" if data["realtime"] else "as fast as the server takes them"
    return (
        f"Streams of {data['chunk_ms']} ms PCM16 frames sent {mode} for {data['duration_s']:.0f} s "
        f"per run; latency: a partial result after its chunk's audio arrived (ms); capacity: the "
        f"most streams with p95 <= {data['latency_bound_ms']:.0f} ms and every text right.\n\n"
        + md_table(["model", "batch_max", "streams", "p50", "p95", "p99", "audio s / s",
                    "right / wrong / failed", "RSS MiB start / peak / after"], "lrrrrrrrr", rows)
        + "\n"
        + md_table(["model", "capacity, batch_max 1", "capacity, batched", "ratio"], "lrrr",
                   capacity)
        + f"\nThe server's work in seconds per second of the run (encoder steps on the scheduler "
        f"thread with --threads {data['threads']}; fbank there too; CTC search and partial "
        f"results, and the end of a stream (attention rescoring, final results), on "
        f"{data['workers']} worker thread(s)); steps wait up to {data['batch_wait_ms']} ms for "
        f"streams due.\n\n"
        + md_table(["model", "batch_max", "streams", "mean batch", "encoder", "fbank",
                    "search", "rescoring"], "lrrrrrrr", work)
        + "\nEncoder steps by batch size (all runs of a setting; the JSON has every size).\n\n"
        + md_table(["model", "batch_max", "batch", "steps", "mean batch", "ms / step",
                    "ms / stream chunk"], "lrrrrrr", encoder)
    )  # fmt: skip
