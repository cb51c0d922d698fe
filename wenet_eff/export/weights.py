"""The weights of a runtime model directory: one file for every graph variant, and the
AOTInductor packages compiled without them.

    weights.bin    every constant of every graph once (identical tensors stored once), raw
                   bytes, each at a 64-byte aligned offset
    weights.json   {"format", "file", "bytes",
                    "tensors": [{"name", "dtype", "shape", "offset"}, ...],
                    "graphs": [{"file": graph file,
                                "constants": [[constant name in the graph, index in
                                               "tensors"], ...]}]}
                   (compact: it ships; for a small packed model it was the largest file
                   after weights.bin and the graphs)

Packed layers (export.packed) are stored as their packed records under the model's layer
names (`<layer>.packed_weight.data`, `.scale`, `.zero`, `.index`); the graphs unpack them
(folded at load), so a directory of a 4-bit model holds 4-bit weights and no float copy.
The C++ runtime reads the same two files (runtime/src/weight_file.h).

`compile_package` compiles an exported program without its constants and with runtime
constant folding, and `slim_package` leaves in the package only what loading needs (the
shared library without its symbol table, deflated; no generated sources).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FORMAT = "wenet_eff.weights/2"
ALIGN = 64
INDEX, BLOB = "weights.json", "weights.bin"
# inductor settings of every .pt2: weights come from weights.bin at load, and what depends on
# them alone (unpacking, dequantizing, int8 codes, bf16 copies) is computed once there. The
# wrapper (the C++ that allocates buffers and calls the kernels, and the load-time folding,
# one block per packed layer: most of a small model's .so) is compiled for size: a binary
# QAT mini_moe's two graphs 995 -> 762 KB deflated, no slower (encoder 45.4 -> 43.6 ms,
# rescoring 13.0 -> 12.8 ms; 2-core EPYC)
COMPILE_CONFIG = {
    "aot_inductor.package_constants_in_so": False,
    "aot_inductor.use_runtime_constant_folding": True,
    "aot_inductor.compile_wrapper_opt_level": "Os",
}
DTYPES = {
    torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.int8: "int8", torch.uint8: "uint8", torch.int16: "int16", torch.int32: "int32",
    torch.int64: "int64", torch.bool: "bool",
}  # fmt: skip


def compile_package(ep: torch.export.ExportedProgram, path: Path) -> dict[str, torch.Tensor]:
    """AOTInductor-compile `ep` into `path` without its constants (see the module docstring).

    Returns: {name in the compiled graph: tensor}, the constants it must be given at load (of
    the program's parameters, buffers and lifted constants, those the graph reads)."""
    torch._inductor.aoti_compile_and_package(
        ep, package_path=str(path), inductor_configs=dict(COMPILE_CONFIG)
    )
    slim_package(path)
    needed = set(torch._inductor.aoti_load_package(str(path)).get_constant_fqns())
    needed = {k for k in needed if not k.startswith("_FOLDED_CONST_")}  # computed at load
    constants = {k: v for k, v in {**ep.state_dict, **ep.constants}.items() if k in needed}
    missing = needed - set(constants)
    if missing:
        raise RuntimeError(f"{path}: constants {sorted(missing)[:5]} not in the exported program")
    return {k: v.detach() for k, v in constants.items()}


def slim_package(path: Path) -> None:
    """Rewrite the .pt2 at `path` with what the loader reads: the shared library (its symbol
    table stripped when `strip` is installed) and the metadata, deflated; no C++ sources."""
    strip = shutil.which("strip")
    tmp = path.with_suffix(".slim.tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith(".cpp"):
                continue
            data = src.read(info.filename)
            if info.filename.endswith(".so") and strip:
                data = _stripped(data, strip)
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            dst.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    os.replace(tmp, path)


def _stripped(data: bytes, strip: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        so = Path(d) / "graph.so"
        so.write_bytes(data)
        proc = subprocess.run([strip, "--strip-unneeded", str(so)], capture_output=True)
        if proc.returncode != 0:  # keep it whole: stripping is only about size
            log.warning("strip failed (%s): the graph keeps its symbols", proc.stderr.decode())
            return data
        return so.read_bytes()


def _key(t: torch.Tensor) -> tuple:
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return DTYPES[t.dtype], tuple(t.shape), hashlib.sha1(raw).hexdigest()


def write_weights(
    out_dir: Path, graphs: dict[str, dict[str, torch.Tensor]], names: dict[str, torch.Tensor]
) -> dict:
    """Write weights.bin and weights.json (module docstring) for the constants of `graphs`
    ({graph file: {constant name: tensor}}); a tensor equal to one of `names` is stored under
    that name. Returns {"file", "index", "bytes"} for meta.json."""
    named = {_key(t): name for name, t in names.items()}
    stored: dict[tuple, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    maps: dict[str, dict[str, str]] = {}
    for graph, constants in sorted(graphs.items()):
        maps[graph] = {}
        for fqn, t in sorted(constants.items()):
            key = _key(t)
            if key not in stored:
                name = named.get(key, fqn)
                if name in tensors:
                    name = f"{graph}:{fqn}"
                stored[key] = name
                tensors[name] = t.contiguous()
            maps[graph][fqn] = stored[key]
    index, offset = [], 0
    tmp = out_dir / f"{BLOB}.tmp"
    with open(tmp, "wb") as f:
        for name, t in tensors.items():
            f.write(b"\0" * (-offset % ALIGN))
            offset += -offset % ALIGN
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
            index.append(
                {"name": name, "dtype": DTYPES[t.dtype], "shape": list(t.shape), "offset": offset}
            )
            f.write(raw)
            offset += len(raw)
    os.replace(tmp, out_dir / BLOB)
    number = {name: i for i, name in enumerate(tensors)}
    graph_lists = [
        {"file": g, "constants": [[fqn, number[name]] for fqn, name in sorted(mapping.items())]}
        for g, mapping in maps.items()
    ]
    content = {"format": FORMAT, "file": BLOB, "bytes": offset, "tensors": index,
               "graphs": graph_lists}  # fmt: skip
    (out_dir / INDEX).write_text(json.dumps(content, separators=(",", ":")))  # compact: it ships
    return {"file": BLOB, "index": INDEX, "bytes": offset}


def read_weights(model_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(weights.json content, {tensor name: tensor}) of a runtime model directory."""
    model_dir = Path(model_dir)
    content = json.loads((model_dir / INDEX).read_text())
    if content.get("format") != FORMAT:
        raise ValueError(f"{model_dir / INDEX}: not a {FORMAT} index; export the model again")
    blob = bytearray((model_dir / content["file"]).read_bytes())
    by_name = {v: k for k, v in DTYPES.items()}
    tensors = {}
    for entry in content["tensors"]:
        dtype = by_name[entry["dtype"]]
        count = int(torch.Size(entry["shape"]).numel())
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        raw = torch.frombuffer(blob, dtype=torch.uint8, count=nbytes, offset=entry["offset"])
        tensors[entry["name"]] = raw.view(dtype).reshape(entry["shape"])
    return content, tensors


def load_graph(model_dir: str | Path, graph: str, weights: tuple | None = None):
    """A .pt2 of `model_dir` loaded by AOTInductor's Python loader, its constants given from
    weights.bin (`weights`: a `read_weights` result to reuse). Call it like the module."""
    content, tensors = weights or read_weights(model_dir)
    (entry,) = [g for g in content["graphs"] if g["file"] == graph]
    names = [t["name"] for t in content["tensors"]]
    bad = [i for _, i in entry["constants"] if not (isinstance(i, int) and 0 <= i < len(names))]
    if bad:  # names[-1] would hand the graph a wrong constant
        raise ValueError(f"{Path(model_dir) / INDEX}: {graph} needs tensor {bad[0]} of "
                         f"{len(names)}, which is not listed")  # fmt: skip
    constants = {fqn: tensors[names[i]] for fqn, i in entry["constants"]}
    compiled = torch._inductor.aoti_load_package(str(Path(model_dir) / graph))
    compiled.load_constants(constants, check_full_update=True)
    return compiled
