"""A client of WeNet's WebSocket protocol (the C++ runtime's websocket_server_main, WeNet's own
server): one utterance per connection, as PCM16 mono frames, with client-side timings. Used by
`python -m wenet_eff.bin.stream_client` and the serve benchmark.

Protocol: the start signal `{"signal":"start","nbest":N,"continuous_decoding":bool}`, answered
by `server_ready`; binary frames of little-endian PCM16 samples at the model's rate, answered by
`partial_result` messages; `{"signal":"end"}`, answered by a `final_result` per segment and
`speech_end`. `"nbest"` in a result is the `[{"sentence": ...}]` list as a JSON string. A
failure is `{"status":"failed","message":...}`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
from websockets.sync.client import connect

from wenet_eff.data.audio import load_audio, resample
from wenet_eff.data.sources import read_data_list


class ServerFailed(Exception):
    """The server answered {"status": "failed", "message": ...}."""


@dataclass
class Result:
    """What the server answered for one utterance, with client-side timings (seconds)."""

    finals: list[list[str]] = field(default_factory=list)  # n-best of each final result
    partials: int = 0
    first_partial_s: float | None = None  # after the first audio frame was sent
    final_s: float | None = None  # speech_end after the end signal was sent

    @property
    def text(self) -> str:
        return " ".join(f[0] for f in self.finals if f and f[0])


def pcm16(wav: np.ndarray) -> bytes:
    """float samples in [-1, 1] as little-endian PCM16 bytes (clipped, rounded)."""
    return (np.clip(np.round(wav * 32768.0), -32768, 32767).astype("<i2")).tobytes()


def read_pcm16(path: str, sample_rate: int) -> bytes:
    """An audio file as PCM16 mono bytes at `sample_rate` (raises AudioError)."""
    wav, sr = load_audio(path)
    return pcm16(resample(wav, sr, sample_rate))


def _nbest(message: dict) -> list[str]:
    return [path["sentence"] for path in json.loads(message["nbest"])]


def stream(url: str, audio: bytes, sample_rate: int, chunk_ms: int = 100,
           realtime: bool = False, nbest: int = 1, continuous_decoding: bool = False,
           on_partial=None, timeout_s: float = 60.0) -> Result:  # fmt: skip
    """Stream PCM16 `audio` as one utterance; returns the server's results.

    on_partial(seconds since the first frame, n-best) is called for each partial result.
    Raises ServerFailed with the server's message, OSError when it cannot be reached,
    websockets' ConnectionClosed when it goes away, TimeoutError after `timeout_s` of silence.
    """
    step = max(2, sample_rate * chunk_ms // 1000 * 2)
    result = Result()
    with connect(url, open_timeout=timeout_s, close_timeout=timeout_s, max_size=None) as ws:

        def handle(message: dict) -> bool:
            """True when the server says speech_end."""
            if message.get("status") != "ok":
                raise ServerFailed(message.get("message", json.dumps(message)))
            kind = message.get("type")
            if kind == "partial_result":
                result.partials += 1
                elapsed = time.perf_counter() - start
                if result.first_partial_s is None:
                    result.first_partial_s = elapsed
                if on_partial is not None:
                    on_partial(elapsed, _nbest(message))
            elif kind == "final_result":
                result.finals.append(_nbest(message))
            return kind == "speech_end"

        def drain(wait_s: float) -> None:
            """Handle what has arrived, waiting up to wait_s for the first message."""
            try:
                while True:
                    handle(json.loads(ws.recv(timeout=wait_s)))
                    wait_s = 0
            except TimeoutError:
                return

        start_signal = {
            "signal": "start",
            "nbest": nbest,
            "continuous_decoding": continuous_decoding,
        }
        ws.send(json.dumps(start_signal))
        message = json.loads(ws.recv(timeout=timeout_s))
        if message.get("status") != "ok" or message.get("type") != "server_ready":
            raise ServerFailed(message.get("message", json.dumps(message)))
        start = time.perf_counter()
        for i in range(0, len(audio), step):
            ws.send(audio[i : i + step])
            # realtime: the next frame is due when this one's audio has played
            due = start + (i + step) / (2 * sample_rate) if realtime else 0.0
            drain(max(0.0, due - time.perf_counter()))
            while time.perf_counter() < due:
                time.sleep(due - time.perf_counter())
        ws.send(json.dumps({"signal": "end"}))
        end = time.perf_counter()
        while not handle(json.loads(ws.recv(timeout=timeout_s))):
            pass
        result.final_s = time.perf_counter() - end
    return result


def utterances(paths: list[str]) -> list[tuple[str, str]]:
    """(key, audio path) of each input: a data.list (JSON lines: its entries) or an audio file
    (key: the file name without its extension)."""
    out = []
    for path in paths:
        with open(path, "rb") as f:
            is_list = f.read(64).lstrip().startswith(b"{")
        if is_list:
            out += [(e["key"], e["wav"]) for e in read_data_list(path)]
        else:
            out.append((os.path.splitext(os.path.basename(path))[0], path))
    return out
