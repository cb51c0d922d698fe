r"""Paper tables and trade-off plots from experiment directories and benchmark JSON.

    python -m wenet_eff.bin.tables exp/mini exp/mini_moe --label mini=Dense --label mini_moe=MoE \
        --bench bench_results/runtime_rtf.json --out_dir exp/tables

Writes OUT_DIR/tables.md (also printed), OUT_DIR/tables.json (every number collected) and the
PNG plots OUT_DIR/wer_vs_rtf.png and wer_vs_size.png (Pareto front drawn). The tables:
  - models: params (total / active) x size x WER per test set x RTF, as U2++ MoE's
    Dense-225M / MoE-1B / Dense-1B table;
  - compression (when a QAT or sparse experiment is given): weights x sparsity x size x WER,
    relative to its float reference run.
What is read is listed in `wenet_eff.bench.results`. A benchmark's model (runtime_rtf's NAME,
decode_rtf's and moe_rtf's model config name) joins the experiment of that name or label, and
is a row of its own otherwise. Missing numbers are blank cells and no plot points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from wenet_eff.bench.common import write_json
from wenet_eff.bench.pareto import plot_tradeoff
from wenet_eff.bench.results import collect_experiment, read_benchmark, warn

# which RTF a cell shows when several fit: the C++ runtime on the recipe's test sets first,
# then the runtime benchmark's engines, then the eager benchmarks
SOURCE_ORDER = ("decoder_main", "runtime_rtf/cpp", "runtime_rtf/onnx", "runtime_rtf/eager",
                "decode_rtf/eager", "moe_rtf/eager")  # fmt: skip


@dataclass
class Selection:
    """Which numbers the tables show: WER of `mode`, RTF at `precision` and `chunk`."""

    mode: str = "attention_rescoring"
    test_sets: list[str] = field(default_factory=list)  # empty: every test set found
    precision: str = "fp32"
    chunk: int = -1  # -1: full context


def pick_rtf(measurements: list[dict], sel: Selection) -> dict | None:
    """The measurement a table shows for `sel`: at its precision and chunk, of its decoding
    mode if there is one (the C++ runtime only rescores), then first in SOURCE_ORDER."""
    fits = [
        m
        for m in measurements
        if m["rtf"] is not None and (m["precision"], m["chunk"]) == (sel.precision, sel.chunk)
    ]

    def rank(m: dict) -> tuple[bool, int]:
        key = m["source"] if m["source"] == "decoder_main" else f"{m['source']}/{m['engine']}"
        order = SOURCE_ORDER.index(key) if key in SOURCE_ORDER else len(SOURCE_ORDER)
        return m["mode"] != sel.mode, order

    return min(fits, key=rank, default=None)


def _mode_wers(exp: dict, mode: str) -> dict[str, float]:
    return {t: modes[mode]["wer"] for t, modes in exp["wer"].items() if mode in modes}


def label_of(exp: dict, labels: dict[str, str]) -> str:
    """--label by exp dir as given or by directory name; else the directory name."""
    return labels.get(exp["exp_dir"], labels.get(exp["name"], exp["name"]))


def model_rows(
    experiments: list[dict], benchmarks: list[dict], labels: dict[str, str], sel: Selection
) -> list[dict]:
    """One row per experiment, then one per benchmark model that joins none: {"label",
    "exp_dir", "params", "size_bytes", "file_bytes", "wer": {test_set: %}, "rtf": measurement
    or None}."""
    rows: dict[str, dict] = {}
    by_name = {}
    for e in experiments:
        label = label_of(e, labels)
        if label in rows:
            raise ValueError(f"two experiments have the label {label!r}: give one a --label")
        by_name[e["name"]] = label
        rows[label] = {"label": label, "exp_dir": e["exp_dir"], "params": e["params"],
                       "size_bytes": e["size_bytes"], "file_bytes": e["file_bytes"],
                       "wer": _mode_wers(e, sel.mode), "rtfs": list(e["rtf"])}  # fmt: skip
    for m in benchmarks:
        label = labels.get(m["model"], by_name.get(m["model"], m["model"]))
        empty = {"label": label, "exp_dir": None, "params": m.get("params"), "size_bytes": None,
                 "file_bytes": None, "wer": {}, "rtfs": []}  # fmt: skip
        rows.setdefault(label, empty)["rtfs"].append(m)
    return [
        {**{k: v for k, v in r.items() if k != "rtfs"}, "rtf": pick_rtf(r["rtfs"], sel)}
        for r in rows.values()
    ]


def _cell(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _mb(size: int | None) -> str:
    return "" if size is None else f"{size / 1e6:.2f}"


def _params(p: dict | None) -> str:
    if not p:
        return ""
    digits = 2 if p["total"] < 1e7 else 1
    return f"{p['total'] / 1e6:.{digits}f} / {p['active'] / 1e6:.{digits}f}"


def _chunk(chunk: int) -> str:
    return "full context" if chunk < 0 else f"chunk {chunk}"


def rtf_setup(m: dict, sel: Selection) -> str:
    """Where an RTF comes from, e.g. `decoder_main cpp fp32 full context, 1 thread` (and its
    decoding mode when it is not the table's)."""
    mode = f" {m['mode']}" if m["mode"] != sel.mode else ""
    threads = f", {m['threads']} thread{'s' * (m['threads'] != 1)}" if m["threads"] else ""
    extra = ", random weights" if m.get("random_weights") else ""
    chunk = _chunk(m["chunk"])
    return f"{m['source']} {m['engine']} {m['precision']} {chunk}{mode}{threads}{extra}"


def model_table(rows: list[dict], test_sets: list[str], sel: Selection) -> str:
    """Markdown: model x params x size x WER per test set x RTF."""
    lines = [
        f"WER % of {sel.mode}; RTF = decode time / audio time ({sel.precision}, "
        f"{_chunk(sel.chunk)}); size: the weights, packed (bin.pack) or float32; file: "
        "packed.pt or the checkpoint on disk.",
        "",
        "| model | params M (total / active) | size MB | file MB | "
        + "".join(f"{t} WER % | " for t in test_sets)
        + "RTF | RTF measured by |",
        "|---|---:|---:|---:|" + "---:|" * len(test_sets) + "---:|---|",
    ]
    for r in rows:
        wers = "".join(f"{_cell(r['wer'].get(t), '.2f')} | " for t in test_sets)
        rtf, setup = (r["rtf"]["rtf"], rtf_setup(r["rtf"], sel)) if r["rtf"] else (None, "")
        lines.append(
            f"| {r['label']} | {_params(r['params'])} | {_mb(r['size_bytes'])} | "
            f"{_mb(r['file_bytes'])} | {wers}"
            f"{_cell(rtf, '.4f')} | {setup} |"
        )
    return "\n".join(lines) + "\n"


def reference_of(
    exp: dict, experiments: list[dict], labels: dict[str, str], reference: str = ""
) -> dict | None:
    """The float run a compressed one is compared with: `reference` (a label, directory name
    or exp dir as given) if set; else the uncompressed run fine-tuned from the same init
    checkpoint (the recipe's `none` control); else the run that init checkpoint belongs to."""
    if reference:
        found = [
            f for f in experiments if reference in (f["name"], f["exp_dir"], label_of(f, labels))
        ]
        if not found:
            raise ValueError(f"--reference {reference}: not one of the experiment directories")
        return found[0]
    init = exp["init_checkpoint"]
    floats = [f for f in experiments if not f["compressed"] and init]
    same_init = [f for f in floats if f["init_checkpoint"] == init]
    base = [f for f in floats if f["name"] == Path(init).parent.name]
    return (same_init + base + [None])[0]


def compression_rows(
    experiments: list[dict], labels: dict[str, str], sel: Selection, reference: str = ""
) -> list[dict]:
    """The float references used, then each compressed experiment with its WER relative to
    its reference's (`wer_rel`, percent); `reference`: as in `reference_of`."""
    compressed = [e for e in experiments if e["compressed"]]
    refs = [reference_of(e, experiments, labels, reference) for e in compressed]
    used = [f for f in experiments if any(f is r for r in refs) and not f["compressed"]]
    rows = []
    for e, ref in [(f, None) for f in used] + list(zip(compressed, refs, strict=True)):
        wer = _mode_wers(e, sel.mode)
        ref_wer = _mode_wers(ref, sel.mode) if ref else {}
        folded = e["folded_sparsity"] or {}
        rows.append(
            {
                "label": label_of(e, labels),
                "exp_dir": e["exp_dir"],
                "weights": e["weights"],
                "sparsity": e["sparsity"],
                "zeros": folded.get("sparsity"),
                "nm_ok": folded.get("nm_ok"),
                "size_bytes": e["size_bytes"],
                "ratio": e["packed"]["ratio"] if e["packed"] else 1.0,  # None: no size JSON
                "reference": label_of(ref, labels) if ref else None,
                "wer": wer,
                "wer_rel": {
                    t: 100 * (w / ref_wer[t] - 1) for t, w in wer.items() if ref_wer.get(t)
                },
            }
        )
    return rows


def compression_table(rows: list[dict], test_sets: list[str], sel: Selection) -> str:
    """Markdown: experiment x weights x sparsity x size x WER (relative to its reference)."""
    lines = [
        f"WER % of {sel.mode} (relative to the float run in `vs`); size: the weights, packed "
        "(bin.pack) or float32; x smaller: float32 over packed; zeros: bin.masks fold.",
        "",
        "| experiment | weights | sparsity | zeros in masked layers | size MB | x smaller | vs | "
        + "".join(f"{t} WER % (rel.) | " for t in test_sets).rstrip(),
        "|---|---|---|---:|---:|---:|---|" + "---:|" * len(test_sets),
    ]
    for r in rows:
        zeros = _cell(r["zeros"], ".1%")
        if r["nm_ok"] is not None:
            zeros += " (N:M exact)" if r["nm_ok"] else " (NOT N:M)"
        cells = "".join(
            f"{_cell(r['wer'].get(t), '.2f')}"
            + (f" ({r['wer_rel'][t]:+.1f} %)" if t in r["wer_rel"] else "")
            + " | "
            for t in test_sets
        )
        lines.append(
            f"| {r['label']} | {r['weights']} | {r['sparsity']} | {zeros} | "
            f"{_mb(r['size_bytes'])} | {_cell(r['ratio'], '.2f')} | {r['reference'] or ''} | "
            f"{cells}".rstrip()
        )
    return "\n".join(lines) + "\n"


def plot_rows(rows: list[dict], test_set: str, sel: Selection, out_dir: Path) -> dict:
    """OUT_DIR/wer_vs_rtf.png and wer_vs_size.png of the rows that have both numbers;
    returns {plot name: labels on its Pareto front}."""
    costs = {
        "wer_vs_rtf": ("RTF", lambda r: r["rtf"]["rtf"] if r["rtf"] else None, False),
        "wer_vs_size": ("size MB", lambda r: r["size_bytes"] and r["size_bytes"] / 1e6, True),
    }
    fronts = {}
    for name, (xlabel, cost, log_x) in costs.items():
        have = [r for r in rows if cost(r) is not None and test_set in r["wer"]]
        if not have:
            warn(f"no model has both the WER on {test_set} and its {xlabel}: no {name}.png")
            continue
        front = plot_tradeoff(
            [(cost(r), r["wer"][test_set]) for r in have],
            [r["label"] for r in have],
            str(out_dir / f"{name}.png"),
            xlabel + (" (log scale)" if log_x else ""),
            f"{test_set} WER % ({sel.mode})",
            f"WER against {xlabel} (lower left is better)",
            log_x,
        )
        fronts[name] = [have[i]["label"] for i in front]
    return fronts


def tables_markdown(result: dict) -> str:
    """The Markdown of a tables.json content: the model table and, when compressed runs were
    given, the compression table over the test sets they were decoded on."""
    sel = Selection(**result["selection"])
    test_sets, comp = result["test_sets"], result["compression_table"]
    markdown = "## Models\n\n" + model_table(result["model_table"], test_sets, sel)
    if comp:
        comp_sets = [t for t in test_sets if any(t in r["wer"] for r in comp)]
        markdown += "\n## Compression\n\n" + compression_table(comp, comp_sets, sel)
    return markdown


def make_tables(
    exp_dirs: list[str],
    labels: dict[str, str],
    bench_files: list[str],
    out_dir: str,
    sel: Selection,
    checkpoint: str = "",
    reference: str = "",
) -> dict:
    """Collect everything, write OUT_DIR/{tables.md,tables.json} and the plots.

    Returns:
        The content of tables.json: the selection, the test-set columns, both tables' rows,
        the Pareto fronts, every experiment's and benchmark's numbers, the markdown and the
        provenance.
    """
    experiments = [collect_experiment(d, checkpoint) for d in exp_dirs]
    benchmarks = [m for path in bench_files for m in read_benchmark(path)]
    found = list(dict.fromkeys(t for e in experiments for t in e["wer"]))
    # top-level test sets first (test, test_real), then deeper ones (test/chunk16), as found
    test_sets = sel.test_sets or sorted(found, key=lambda t: (t.count("/"), found.index(t)))
    rows = model_rows(experiments, benchmarks, labels, sel)
    comp = []
    if any(e["compressed"] for e in experiments):
        comp = compression_rows(experiments, labels, sel, reference)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fronts = {}
    if test_sets:
        fronts = plot_rows(rows, test_sets[0], sel, out)
    else:
        warn("no <test_set>/<mode>/wer file in any experiment: no plots")
    result = {
        "selection": asdict(sel),
        "test_sets": test_sets,
        "model_table": rows,
        "compression_table": comp,
        "pareto_front": fronts,
        "experiments": experiments,
        "benchmarks": benchmarks,
    }
    result["markdown"] = tables_markdown(result)
    (out / "tables.md").write_text(result["markdown"], encoding="utf-8")
    return write_json(result, str(out / "tables.json"))
