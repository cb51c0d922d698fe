"""Stream utterances to a WebSocket server speaking WeNet's protocol (runtime/build/
websocket_server_main, or WeNet's own websocket_server_main) and print what it recognises.

    python -m wenet_eff.bin.stream_client --url ws://127.0.0.1:10086 test.wav
    python -m wenet_eff.bin.stream_client --url ws://127.0.0.1:10086 data/test/data.list --realtime

Each utterance (a WAV/FLAC file, or every entry of a data.list) goes over its own connection:
the start signal `{"signal":"start","nbest":N,"continuous_decoding":bool}`, the audio as binary
frames of PCM16 mono samples at --sample_rate (the model's, meta.json `sample_rate`; the file
is read, downmixed and resampled as training reads it: wenet_eff.data.audio), `--chunk_ms` per
frame (sent as fast as the server takes them, or one frame per `--chunk_ms` with --realtime),
then `{"signal":"end"}`. The server answers partial results while audio arrives, a final
result per segment and `speech_end` (the client: wenet_eff.export.ws_client).

stdout: `key text` per utterance, the best sentences of its final results joined by a space
(as decoder_main joins segments). stderr: per utterance, the audio length, the first partial
result's delay after the first frame and the final result's delay after the end signal; the
other hypotheses of each final result with --nbest > 1; the server's failure message for an
utterance it refused (`{"status":"failed","message":...}`). Exit status 1 when any utterance
failed or the server cannot be reached.
"""

from __future__ import annotations

import argparse
import sys

from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from wenet_eff.data.audio import AudioError
from wenet_eff.export.ws_client import ServerFailed, read_pcm16, stream, utterances


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("inputs", nargs="+", help="audio files and/or data.list files")
    p.add_argument("--url", default="ws://127.0.0.1:10086", help="the server's ws:// address")
    p.add_argument("--sample_rate", type=int, default=16000, help="the model's sample rate")
    p.add_argument("--chunk_ms", type=int, default=100, help="audio per binary frame (ms)")
    p.add_argument("--realtime", action="store_true", help="send one frame per --chunk_ms")
    p.add_argument("--nbest", type=int, default=1, help="hypotheses per result")
    p.add_argument("--continuous_decoding", action="store_true",
                   help="results per segment, closed at each endpoint")  # fmt: skip
    p.add_argument("--timeout_s", type=float, default=60.0, help="longest wait for the server")
    args = p.parse_args(argv)
    if args.chunk_ms < 1 or args.nbest < 1 or args.sample_rate < 1:
        p.error("--chunk_ms, --nbest and --sample_rate must be >= 1")
    failed = 0
    for key, path in utterances(args.inputs):
        try:
            audio = read_pcm16(path, args.sample_rate)
            r = stream(args.url, audio, args.sample_rate, args.chunk_ms, args.realtime,
                       args.nbest, args.continuous_decoding, timeout_s=args.timeout_s)  # fmt: skip
        except (AudioError, ServerFailed, ConnectionClosed, TimeoutError) as exc:
            what = "server failed" if isinstance(exc, ServerFailed) else type(exc).__name__
            print(f"{key}: {what}: {exc}", file=sys.stderr)
            failed += 1
            continue
        except (OSError, InvalidURI, WebSocketException) as exc:
            sys.exit(f"stream_client: cannot reach {args.url}: {exc} (is websocket_server_main "
                     "running there? see docs/runtime.md)")  # fmt: skip
        print(f"{key} {r.text}".rstrip(), flush=True)
        first = "none" if r.first_partial_s is None else f"{1000 * r.first_partial_s:.0f} ms"
        print(f"{key}: {len(audio) / 2 / args.sample_rate:.2f} s audio, {r.partials} partial "
              f"results (first after {first}), final result {1000 * r.final_s:.0f} ms after the "
              "end signal", file=sys.stderr)  # fmt: skip
        for i, final in enumerate(r.finals):
            for rank, sentence in enumerate(final[1:], 2):
                print(f"{key}: segment {i} hypothesis {rank}: {sentence}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
