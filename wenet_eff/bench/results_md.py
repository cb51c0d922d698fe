r"""A recipe's RESULTS.md, generated from the result JSON kept in its results/ folder.

    python -m wenet_eff.bin.tables exp/mini_moe exp/mini_moe_streaming --results_dir results
    python -m wenet_eff.bin.tables --results_dir results --keep bench_results/compress_size.json
    python -m wenet_eff.bin.tables --results_dir results                  # rewrite RESULTS.md

exp/ is not committed, so a run's numbers are kept by copying its result JSON (the tables of
bin.tables, tools/wer_table.py, tools/runtime_table.py, local/*_table.py and the benchmarks,
each with its provenance: `wenet_eff.bench.common.write_json`) into results/, which is. RESULTS.md
(beside results/ unless --results_md) is then rewritten from every JSON there: one section per
file, sections in the order of SECTIONS then by file name, each with the command that wrote its
JSON, the git commit, the date and the machine. The same JSON gives the same bytes.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from wenet_eff.bench import sections
from wenet_eff.bench.results import read_result, result_kind
from wenet_eff.bench.tables import tables_markdown

# kind: (section title, renderer of the JSON's content), in the order RESULTS.md shows them
SECTIONS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "tables": ("Models and compression", tables_markdown),
    "wer_table": ("WER per decoding mode", sections.wer_table),
    "runtime_table": ("C++ runtime: WER and RTF", sections.runtime_table),
    "compress_table": ("Quantization-aware training", sections.compress_table),
    "sparse_table": ("Sparsity", sections.sparse_table),
    "adapt_table": ("Adaptation with masks", sections.adapt_table),
    "runtime_rtf": ("Runtime RTF: eager, C++ and onnxruntime", sections.runtime_rtf),
    "decode_rtf": ("Decoding RTF", sections.decode_rtf),
    "moe_rtf": ("MoE cost against dense models", sections.moe_rtf),
    "streaming_latency": ("Streaming latency", sections.streaming_latency),
    "train_throughput": ("Training throughput", sections.train_throughput),
    "train_vs_wenet": ("Training step against WeNet's code", sections.train_vs_wenet),
    "monitor_overhead": ("Stability monitor cost", sections.monitor_overhead),
    "compress_size": ("Packed model sizes", sections.compress_size),
    "model_info": ("Parameters and FLOPs", sections.model_info),
    "runtime_lm": ("C++ runtime: n-gram LM and context biasing", sections.runtime_lm),
    "serve": ("WebSocket server: concurrent streams", sections.serve),
}


def experiment_results(exp_dir: str) -> list[tuple[str, Path]]:
    """(name to keep it as, path) of each result JSON at the top of an experiment directory
    (wer_table.json, runtime_table.json, ...), kept as `<directory name>.<file name>`. Other
    JSON there (bin.pack's size report, mask reports) is not a table and is left."""
    exp = Path(exp_dir)
    found = []
    for path in sorted(exp.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if result_kind(data):
            found.append((f"{exp.name}.{path.name}", path))
    return found


def keep_results(sources: list[tuple[str, Path]], results_dir: str) -> list[Path]:
    """Copy each (name, source) to RESULTS_DIR/name, as it is, after checking that it is a
    result JSON with its provenance (`read_result`: a ValueError naming the file otherwise).
    A file of the same name there is replaced (a rerun's numbers replace the old ones)."""
    names = [name for name, _ in sources]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise ValueError(f"two results would be kept as {', '.join(doubles)}: rename one")
    for _, source in sources:
        read_result(source)
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for name, source in sources:
        if Path(source).resolve() != (out / name).resolve():
            shutil.copyfile(source, out / name)
        kept.append(out / name)
    return kept


def provenance_lines(prov: dict) -> str:
    """The Markdown list under a section's title: command, commit and date, machine."""
    date = datetime.datetime.fromisoformat(prov["date"]).astimezone(datetime.UTC)
    commit = f"commit `{prov['commit'][:12]}`" if prov["commit"] else "no git commit (installed)"
    if prov["commit"] and prov["dirty"]:
        commit += " with uncommitted changes"
    threads = f", {prov['threads']} thread{'s' * (prov['threads'] != 1)}" if prov["threads"] else ""
    return (
        f"- command: `{prov['command']}`\n"
        f"- {commit}, {date:%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {prov['cpu']} ({prov['isa']}), {prov['cores']} cores{threads}\n"
    )


def results_markdown(results_dir: str, results_md: str) -> str:
    """The content of RESULTS.md from every RESULTS_DIR/*.json (paths in it relative to
    RESULTS.md's directory); a ValueError naming a file that is no result JSON or has no
    provenance."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ValueError(f"{results_dir}: no such results directory")
    found = [(path, *read_result(path)) for path in sorted(folder.glob("*.json"))]
    found.sort(key=lambda r: (list(SECTIONS).index(r[1]), r[0].name))
    rel = Path(os.path.relpath(folder, Path(results_md).resolve().parent)).as_posix()
    text = (
        "# Results\n\n"
        f"Generated from the JSON files in `{rel}/` by `python -m wenet_eff.bin.tables "
        f"--results_dir {rel}`, run in this directory. Do not edit it by hand: keep a run's "
        f"JSON with `python -m wenet_eff.bin.tables EXP_DIR... --results_dir {rel}` (or "
        "`--keep FILE.json` for a benchmark's) and the command rewrites this file.\n"
    )
    if not found:
        text += (
            "\nNo result has been produced yet: no JSON in "
            f"`{rel}/`. A recipe run keeps its tables there in its last stage.\n"
        )
    for path, kind, data in found:
        title, render = SECTIONS[kind]
        body = re.sub(r"^## ", "### ", render(data), flags=re.M)  # its headings under ours
        text += f"\n## {title}: `{path.name}`\n\n{provenance_lines(data['provenance'])}\n{body}"
    return text


def write_results_md(results_dir: str, results_md: str = "") -> Path:
    """Rewrite RESULTS_MD (default: RESULTS.md beside RESULTS_DIR) from RESULTS_DIR/*.json."""
    path = Path(results_md or Path(results_dir).resolve().parent / "RESULTS.md")
    path.write_text(results_markdown(results_dir, str(path)), encoding="utf-8")
    return path
