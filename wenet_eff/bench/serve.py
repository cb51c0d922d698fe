"""The WebSocket server under load: N concurrent real-time streams, batched across streams and
not, per exported model.

    python -m wenet_eff.bin.benchmark serve --model_dir exp/mini_moe/runtime_fp32 \
        --streams 1 8 32 64 --batch_max 15 1 --duration_s 20

For every model directory, every --batch_max (15: cross-stream batching; 1: one stream per
encoder step) and every stream count N, a fresh runtime/build/websocket_server_main serves N
clients (wenet_eff.export.ws_client's `stream`, one thread each) that stream utterances of
--data (audio files or data.list; default: the asterisk prompts) one after another, each as
PCM16 frames of --chunk_ms sent in real time (not with --no-realtime), until --duration_s has
passed. Reported per run, from the server's --stats_json: the p50 / p95 / p99 latency of a
partial result, from the arrival of the audio that completed its chunk to its result; the
encoder steps by batch size and their milliseconds; and, from the clients, each utterance's
final text against the same samples decoded alone by the C++ Decoder (a mismatch is a
cross-stream mix-up or a batching error), failures, and the server's RSS (after load, peak,
after the streams closed). The capacity of a setting is the largest N whose p95 is within
--latency_ms with every stream's text right; the batched / unbatched capacity ratio per model
is the figure of the issue's target (>= 3x).

Writes JSON (with provenance) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from wenet_eff.bench.common import environment, write_json
from wenet_eff.bench.sections import serve as serve_section
from wenet_eff.export.cpp import binary
from wenet_eff.export.ws_client import ServerFailed, read_pcm16, stream, utterances

ASTERISK = Path("/usr/share/asterisk/sounds/en")
PROMPTS = ["hello-world", "vm-goodbye", "agent-pass", "conf-onlyperson", "vm-intro"]


class Server:
    """runtime/build/websocket_server_main on a free loopback port, for `with`.

    `stop()` sends SIGTERM and returns its --stats_json figures (RuntimeError, with the end of
    its log, when it did not stop cleanly); `rss_kib()` reads its VmRSS.
    """

    def __init__(self, model_dir: str | os.PathLike, *flags: str, timeout_s: float = 120.0):
        self._dir = tempfile.TemporaryDirectory(prefix="serve")
        self.log = Path(self._dir.name) / "server.log"
        self._stats = Path(self._dir.name) / "stats.json"
        cmd = [str(binary("websocket_server_main")), "--model_dir", str(model_dir),
               "--port", "0", "--stats_json", str(self._stats), *flags]  # fmt: skip
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout_s
        while not (match := re.search(r"listening on port (\d+)", self.log.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"{' '.join(cmd)} did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.url = f"ws://127.0.0.1:{match.group(1)}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:]

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(f"the server did not stop on SIGTERM:\n{self.log_tail()}") from None
        if code != 0:
            raise RuntimeError(f"the server exited with status {code}:\n{self.log_tail()}")
        stats = json.loads(self._stats.read_text())
        self._dir.cleanup()
        return stats

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._dir.cleanup()


def reference_texts(model_dir: str, audio: list[bytes], threads: int) -> list[str]:
    """Each utterance's text decoded alone by the C++ Decoder (the server's default options)."""
    from wenet_eff.export.cpp import load_runtime

    rt = load_runtime()
    rt.set_num_threads(threads)
    decoder = rt.Decoder(rt.Model(str(model_dir)))
    texts = []
    for pcm in audio:
        texts.append(decoder.decode(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0)["text"])
        decoder.reset()
    return texts


def load_run(server: Server, audio: list[bytes], expected: list[str], streams: int,
             args: argparse.Namespace) -> dict:  # fmt: skip
    """`streams` clients streaming `audio` in turn (client k starts at utterance k) for
    args.duration_s; their results and the server's RSS, sampled every 0.2 s."""
    lock = threading.Lock()
    counts = {"utterances": 0, "wrong": 0, "failed": 0, "audio_s": 0.0}
    failures: list[str] = []
    final_ms: list[float] = []
    end = time.monotonic() + args.duration_s

    def client(k: int) -> None:
        i = k
        while time.monotonic() < end:
            u = i % len(audio)
            try:
                r = stream(server.url, audio[u], args.sample_rate, args.chunk_ms, args.realtime)
                outcome = "wrong" if r.text != expected[u] else "utterances"
            except (ServerFailed, OSError, TimeoutError) as exc:
                outcome, r = "failed", None
                failures.append(f"client {k}, utterance {u}: {exc}")
            with lock:
                counts[outcome] += 1
                if r is not None:
                    counts["audio_s"] += len(audio[u]) / 2 / args.sample_rate
                    final_ms.append(1000 * r.final_s)
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(streams)]
    rss = [server.rss_kib()]
    start = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append(server.rss_kib())
        time.sleep(0.2)
    wall = time.monotonic() - start
    time.sleep(0.5)  # the scheduler drops the closed streams
    return {
        **counts,
        "wall_s": wall,
        "final_ms_p50": float(np.percentile(final_ms, 50)) if final_ms else None,
        "rss_kib": {"start": rss[0], "peak": max(rss), "after": server.rss_kib()},
        "failures": failures[:5],
    }


def run(args: argparse.Namespace) -> dict:
    inputs = (
        utterances(args.data) if args.data else [(n, str(ASTERISK / f"{n}.wav")) for n in PROMPTS]
    )
    audio = [read_pcm16(path, args.sample_rate) for _, path in inputs]
    runs = []
    for model_dir in args.model_dir:
        expected = reference_texts(model_dir, audio, args.threads)
        for batch_max in args.batch_max:
            for n in args.streams:
                flags = ["--max_streams", str(max(args.streams)), "--batch_max", str(batch_max),
                         "--batch_wait_ms", str(args.batch_wait_ms), "--threads",
                         str(args.threads), "--workers", str(args.workers)]  # fmt: skip
                with Server(model_dir, *flags) as server:
                    figures = load_run(server, audio, expected, n, args)
                    stats = server.stop()
                row = {"model": Path(model_dir).parent.name or str(model_dir),
                       "model_dir": str(model_dir), "batch_max": batch_max, "streams": n,
                       **figures, "chunks": stats["chunks"], "latency_ms": stats["latency_ms"],
                       "encoder_by_batch": stats["encoder_by_batch"],
                       "seconds": stats["seconds"]}  # fmt: skip
                row["ok"] = (row["wrong"] == row["failed"] == 0
                             and stats["latency_ms"]["p95"] <= args.latency_ms)  # fmt: skip
                print(f"{row['model']} batch_max {batch_max} streams {n}: p95 "
                      f"{stats['latency_ms']['p95']:.0f} ms, {row['utterances']} right, "
                      f"{row['wrong']} wrong, {row['failed']} failed", flush=True)  # fmt: skip
                runs.append(row)
    capacity: dict[str, dict[str, int]] = {}
    for r in runs:
        best = capacity.setdefault(r["model"], {}).get(str(r["batch_max"]), 0)
        capacity[r["model"]][str(r["batch_max"])] = max(best, r["streams"] if r["ok"] else 0)
    return {
        "serve_runs": runs,
        "capacity": capacity,
        "latency_bound_ms": args.latency_ms,
        "duration_s": args.duration_s,
        "realtime": args.realtime,
        "chunk_ms": args.chunk_ms,
        "utterances": [key for key, _ in inputs],
        **environment(),
        "threads": args.threads,
        "workers": args.workers,
        "batch_wait_ms": args.batch_wait_ms,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model_dir", nargs="+", required=True, help="exported model directories")
    p.add_argument("--data", nargs="*", default=[], help="audio files and/or data.list files")
    p.add_argument("--streams", nargs="+", type=int, default=[1, 8, 32, 64])
    p.add_argument("--batch_max", nargs="+", type=int, default=[15, 1])
    p.add_argument("--batch_wait_ms", type=int, default=100)
    p.add_argument("--duration_s", type=float, default=20.0, help="streaming time per run")
    p.add_argument("--latency_ms", type=float, default=300.0, help="p95 bound for capacity")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--chunk_ms", type=int, default=100, help="audio per binary frame")
    p.add_argument("--sample_rate", type=int, default=16000, help="the models' sample rate")
    p.add_argument("--threads", type=int, default=1, help="the server's --threads")
    p.add_argument("--workers", type=int, default=1, help="the server's --workers")
    p.add_argument("--out", default="bench_results/serve.json")
    args = p.parse_args(argv)
    r = run(args)
    print(serve_section(r), end="")
    write_json(r, args.out)
    return r


if __name__ == "__main__":
    main()
