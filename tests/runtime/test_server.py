"""The WebSocket server (runtime/build/websocket_server_main) on loopback, with the tiny exported
model: the batched encoder step equals each stream alone; 8, 32 and 64 concurrent real-time
streams each get their own transcript, batched; bad clients are refused with WeNet's failure
message and leave the server serving; the stream_client CLI end to end. The server's RSS after
streams close is checked here against a second round of the same load (a leak per stream would
add to it); the serve benchmark reports it per load."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.runtime.conftest import ASTERISK, PROMPTS
from wenet_eff.bench.serve import Server
from wenet_eff.export.cpp import binary
from wenet_eff.export.ws_client import read_pcm16, stream

# 8 different recorded prompts (8 kHz, resampled by the client as it streams them)
NAMES = [*PROMPTS, "conf-getpin", "auth-thankyou", "conf-kicked"]
RATE = 16000


@pytest.fixture(scope="module")
def audio() -> dict[str, bytes]:
    if not (ASTERISK / "hello-world.wav").exists():
        pytest.skip(f"{ASTERISK} missing: install asterisk-core-sounds-en-wav")
    return {n: read_pcm16(str(ASTERISK / f"{n}.wav"), RATE) for n in NAMES}


@pytest.fixture(scope="module")
def alone(runtime, dense_fp32, audio) -> dict[str, str]:
    """Each prompt's text decoded alone by the C++ Decoder from the samples the server gets."""
    decoder = runtime.Decoder(runtime.Model(str(dense_fp32)))
    texts = {}
    for name, pcm in audio.items():
        texts[name] = decoder.decode(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0)["text"]
        decoder.reset()
    return texts


def transcript(url: str, pcm: bytes, **options) -> tuple[str, list]:
    """The final text and every result's 4-best in order (partial results while the audio
    arrives, one per step that decoded something; then the final one): a stream's trace,
    which tells the prompts apart where their best texts are alike."""
    trace = []
    r = stream(url, pcm, RATE, nbest=4, on_partial=lambda _, nbest: trace.append(nbest), **options)
    return r.text, [*trace, *r.finals]


def concurrent(url: str, pcms: list[bytes]) -> list[tuple[str, list]]:
    """Each of `pcms` streamed in real time by its own client, started 20 ms apart: their
    transcripts (AssertionError naming the streams that failed)."""
    results, errors = [None] * len(pcms), []

    def client(k: int) -> None:
        time.sleep(0.02 * k)
        try:
            results[k] = transcript(url, pcms[k], realtime=True)
        except Exception as exc:  # reported below with the stream's number
            errors.append(f"stream {k} of {len(pcms)}: {exc!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(pcms))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def failure(ws) -> str:
    """The failure message the server answers with; the connection then closes."""
    message = json.loads(ws.recv(timeout=10))
    assert message["status"] == "failed", message
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)
    return message["message"]


def start(ws, **options) -> None:
    ws.send(json.dumps({"signal": "start", **options}))
    assert json.loads(ws.recv(timeout=10)) == {"status": "ok", "type": "server_ready"}


def test_batched_step_equals_each_stream_alone(dense_fp32, speech):
    proc = subprocess.run(
        [str(binary("batch_step_check")), str(dense_fp32), *(str(p) for _, p, _ in speech)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["max_abs_encoder_out"] <= 1e-4 and r["max_abs_ctc_log_probs"] <= 1e-4
    assert r["batched"] == r["alone"] and any(r["alone"])
    assert r["steps"] == r["steps_alone"]
    assert max(r["batch_sizes"]) == len(speech)


def test_concurrent_streams_get_their_own_text_batched(dense_fp32, audio, alone):
    """Rounds of N = 8, 32, 64 and again 64 streams in real time (the 8 prompts in turn),
    started 20 ms apart (at different positions in each step): each stream's results (partial
    and final 4-best lists) are those of its prompt streamed alone, its text the Decoder's;
    partial results came while audio arrived; the steps ran batched, searched by two workers;
    and the server's RSS after the second round of 64 is where the first left it (what a peak
    of 64 decoders leaves the allocator stays; a stream that leaked would add to it)."""
    flags = ["--max_streams", "64", "--batch_max", "15", "--batch_wait_ms", "100",
             "--workers", "2"]  # fmt: skip
    rounds = [8, 32, 64, 64]
    with Server(dense_fp32, *flags) as server:
        lone = {n: transcript(server.url, audio[n]) for n in NAMES}
        assert {n: text for n, (text, _) in lone.items()} == alone
        assert len({json.dumps(trace) for _, trace in lone.values()}) == len(NAMES)
        rss = []
        for streams in rounds:
            names = [NAMES[k % len(NAMES)] for k in range(streams)]
            results = concurrent(server.url, [audio[name] for name in names])
            assert results == [lone[name] for name in names], streams
            time.sleep(0.3)  # the scheduler drops the finished streams
            rss.append(server.rss_kib())
        stats = server.stop()
    assert stats["streams_opened"] == stats["streams_finished"] == len(NAMES) + sum(rounds)
    assert max(int(b) for b in stats["encoder_by_batch"]) > 1, stats["encoder_by_batch"]
    assert stats["latency_ms"]["chunks"] == stats["chunks"] > 0
    # measured: the second round of 64 adds 0-2.5 MiB; a leak of 128 KiB a stream adds 8
    assert rss[-1] < rss[-2] + 8 * 1024, rss


def test_bad_clients_are_refused_and_the_server_keeps_serving(dense_fp32, audio, alone):
    with Server(dense_fp32, "--max_streams", "2", "--idle_timeout_s", "1") as server:
        refusals = {}
        for name, frames in {
            "malformed": ['{"signal": "start", '],
            "float_text": ["[0.25, -0.5, 0.125]"],
            "unknown_signal": ['{"signal": "pause"}'],
            "binary_first": [b"\x00\x01" * 800],
            "bad_nbest": ['{"signal": "start", "nbest": "two"}'],
        }.items():
            with connect(server.url) as ws:
                for frame in frames:
                    ws.send(frame)
                refusals[name] = failure(ws)
        with connect(server.url) as ws:  # an odd byte count is no PCM16 frame
            start(ws)
            ws.send(b"\x00" * 801)
            refusals["odd_bytes"] = failure(ws)
        with connect(server.url) as ws:
            start(ws)
            began = time.monotonic()
            refusals["idle"] = failure(ws)
            assert 0.9 < time.monotonic() - began < 5
        # disconnect mid-stream: audio sent, the socket shut without a close frame
        ws = connect(server.url)
        start(ws)
        ws.send(audio[NAMES[4]][: RATE * 2])
        ws.socket.shutdown(socket.SHUT_RDWR)
        ws.socket.close()
        time.sleep(0.2)  # for the server to see it; a refused stream's place is free at once
        # --max_streams 2: two live streams, the third refused
        first, second = connect(server.url), connect(server.url)
        start(first)
        start(second)
        with connect(server.url) as ws:
            ws.send(json.dumps({"signal": "start"}))
            refusals["busy"] = failure(ws)
        first.close()
        second.close()
        assert "malformed JSON" in refusals["malformed"]
        assert "JSON object" in refusals["float_text"]
        assert '"pause"' in refusals["unknown_signal"]
        assert "Start signal is expected" in refusals["binary_first"]
        assert "nbest" in refusals["bad_nbest"]
        assert "801 bytes" in refusals["odd_bytes"] and "PCM16" in refusals["odd_bytes"]
        assert "--idle_timeout_s" in refusals["idle"]
        assert "--max_streams" in refusals["busy"]
        # every stream above was let go: both places are free again, and a stream decodes
        time.sleep(0.3)
        assert server.proc.poll() is None
        results = [None, None]

        def client(i: int) -> None:
            results[i] = stream(server.url, audio[NAMES[i]], RATE, nbest=3).text

        threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == [alone[NAMES[0]], alone[NAMES[1]]]
        server.stop()


def test_stream_client_cli(dense_fp32, audio, alone, tmp_path):
    """A data.list and a wav through the CLI: `key text` lines, a latency figure per utterance;
    a server that is not there is an error naming the address."""
    data = tmp_path / "data.list"
    data.write_text(
        "".join(json.dumps({"key": f"u{i}", "wav": str(ASTERISK / f"{n}.wav"), "txt": "X"}) + "\n"
                for i, n in enumerate(NAMES[:2]))
    )  # fmt: skip
    cli = [sys.executable, "-m", "wenet_eff.bin.stream_client"]
    with Server(dense_fp32) as server:
        inputs = [str(data), str(ASTERISK / "vm-intro.wav")]
        proc = subprocess.run([*cli, "--url", server.url, *inputs], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        server.stop()
    assert proc.returncode == 0, proc.stderr
    expected = [f"u0 {alone[NAMES[0]]}", f"u1 {alone[NAMES[1]]}", f"vm-intro {alone['vm-intro']}"]
    assert proc.stdout.splitlines() == [line.rstrip() for line in expected]
    assert proc.stderr.count("ms after the end signal") == 3
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([*cli, "--url", f"ws://127.0.0.1:{port}", str(data)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert f"cannot reach ws://127.0.0.1:{port}" in proc.stderr and "refused" in proc.stderr


def test_serve_benchmark_smoke(dense_fp32, audio, tmp_path):
    """The serve benchmark, briefly (2 streams, 1 s, as fast as the server takes them): every
    text right, its JSON a result of kind serve whose section renders in RESULTS.md."""
    from wenet_eff.bench import serve
    from wenet_eff.bench.results import read_result
    from wenet_eff.bench.results_md import results_markdown

    out = tmp_path / "results" / "serve.json"
    wavs = [str(ASTERISK / f"{n}.wav") for n in NAMES[:3]]
    serve.main(["--model_dir", str(dense_fp32), "--data", *wavs, "--streams", "2",
                "--batch_max", "2", "1", "--duration_s", "1", "--no-realtime",
                "--out", str(out)])  # fmt: skip
    kind, data = read_result(out)
    assert kind == "serve"
    assert [(r["batch_max"], r["streams"]) for r in data["serve_runs"]] == [(2, 2), (1, 2)]
    for r in data["serve_runs"]:
        assert r["utterances"] >= 2 and r["wrong"] == r["failed"] == 0, r
    assert {"1"} <= set(data["serve_runs"][1]["encoder_by_batch"]) == {"1"}
    assert "| dense | 2 | 2 |" in results_markdown(str(out.parent), str(tmp_path / "RESULTS.md"))
