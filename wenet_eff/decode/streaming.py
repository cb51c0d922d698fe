"""Streaming recognition: feed audio in pieces of any size, read partial results as chunks
complete, finalize with attention rescoring, detect the end of an utterance by trailing silence.

    from wenet_eff.decode.streaming import StreamingSession
    from wenet_eff.model import load_model

    cfg, model = load_model("exp/mini_streaming/train.yaml", "exp/mini_streaming/avg_2.pt")
    session = StreamingSession.from_config(cfg, model, chunk_size=16)
    for piece in pieces_of_100ms:                  # float32 samples in [-1, 1] (or int16)
        result = session.accept_waveform(piece)
        print(result.text)                      # partial: CTC prefix beam search so far
        if result.endpoint:                     # trailing silence after speech (EndpointConfig)
            break
    print(session.finalize().text)              # attention rescoring of the CTC n-best
    session.reset()                             # ready for the next utterance

The session computes Kaldi fbank incrementally (kaldi-native-fbank), runs the encoder one chunk at
a time with its attention and convolution caches (`encoder.forward_chunk`), and extends the CTC
prefix beam with each chunk. Its encoder output and CTC posteriors equal the offline forward under
the same chunk mask (`model.decode(..., decoding_chunk_size=chunk_size,
num_decoding_left_chunks=num_left_chunks)`), so its results equal offline decoding (tests check).
`chunk_size <= 0` decodes with full context: features stream in, the encoder runs at finalize.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import DictConfig

from wenet_eff.data.features import INT16_SCALE, fbank_extractor, read_frames
from wenet_eff.data.tokenizer import build_tokenizer
from wenet_eff.decode.attention import attention_rescoring
from wenet_eff.decode.ctc import CtcPrefixBeam, Hypothesis


@dataclass
class EndpointRule:
    """An endpoint is detected when all hold: something was decoded (if `must_decode`), the
    trailing silence is at least `min_trailing_silence` seconds, and the utterance is at least
    `min_utterance_length` seconds long."""

    must_decode: bool
    min_trailing_silence: float
    min_utterance_length: float = 0.0

    def fires(self, decoded: bool, trailing_silence: float, utterance_length: float) -> bool:
        return (
            (decoded or not self.must_decode)
            and trailing_silence >= self.min_trailing_silence
            and utterance_length >= self.min_utterance_length
        )


def _default_rules() -> list[EndpointRule]:
    return [
        EndpointRule(must_decode=False, min_trailing_silence=5.0),  # nothing said for 5 s
        EndpointRule(must_decode=True, min_trailing_silence=1.0),  # 1 s of silence after speech
        EndpointRule(must_decode=True, min_trailing_silence=0.0, min_utterance_length=20.0),
    ]


@dataclass
class EndpointConfig:
    """Endpointing by trailing silence, WeNet's three default rules: an encoder frame is silence
    when its CTC blank posterior is at least `blank_threshold`; any rule firing ends the
    utterance. An empty rule list disables endpointing."""

    blank_threshold: float = 0.8
    rules: list[EndpointRule] = field(default_factory=_default_rules)


@dataclass
class StreamingResult:
    """What the session knows so far. `tokens` / `text`: best CTC prefix (partial) or the
    rescored result (`final`); `endpoint`: an endpoint rule fired (call finalize, then reset);
    `frames`: encoder frames decoded so far; `token_frames`: encoder frame at which each token
    first appeared in the CTC beam."""

    tokens: list[int]
    text: str
    final: bool = False
    endpoint: bool = False
    frames: int = 0
    token_frames: list[int] = field(default_factory=list)


class StreamingSession:
    """One stream at a time through a U2++ model (see the module docstring).

    Args:
        model: ASRModel in eval mode (dense or MoE; the convolution must be causal for
            chunk-by-chunk decoding to equal the masked forward).
        tokenizer: turns token ids into text (None: `text` stays empty).
        chunk_size: encoder frames per chunk (each frame is subsampling x frame_shift ms,
            40 ms for 4x subsampling of 10 ms frames); <= 0 decodes with full context.
        num_left_chunks: chunks of attention cache kept (<0: all).
        beam_size: CTC prefix beam (and the n-best that attention rescoring scores).
        ctc_weight / reverse_weight: attention rescoring weights (as in recognize).
        sample_rate / num_mel_bins / frame_length / frame_shift: the model's features.
        endpoint: endpointing rules.
        lm: a word LM fused into the prefix beam search (`wenet_eff.decode.lm.WordLmFusion`).
        min_token_logp: the prefix search's per-frame token floor (see CtcPrefixBeam).
        context: context biasing in the prefix beam search (`wenet_eff.decode.context`).
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        chunk_size: int = 16,
        num_left_chunks: int = -1,
        beam_size: int = 10,
        ctc_weight: float = 0.3,
        reverse_weight: float = 0.5,
        sample_rate: int = 16000,
        num_mel_bins: int = 80,
        frame_length: int = 25,
        frame_shift: int = 10,
        endpoint: EndpointConfig | None = None,
        lm=None,
        min_token_logp: float | None = None,
        context=None,
    ):
        encoder = model.encoder
        if chunk_size > 0 and encoder.encoders:
            conv = encoder.encoders[0].conv_module
            if conv is not None and conv.lorder == 0:
                raise ValueError(
                    "chunk-by-chunk decoding needs a causal convolution module "
                    "(model.encoder.causal=true; fine-tune with train=streaming_finetune)"
                )
        self.model = model
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size
        self.num_left_chunks = num_left_chunks
        self.beam_size = beam_size
        self.lm = lm
        self.min_token_logp = min_token_logp
        self.context_graph = context
        self.ctc_weight = ctc_weight
        self.reverse_weight = reverse_weight
        self.sample_rate = sample_rate
        self.fbank_opts = (sample_rate, num_mel_bins, frame_length, frame_shift)
        self.endpoint_config = endpoint or EndpointConfig()
        sub = encoder.embed.subsampling_rate
        self.context = encoder.embed.right_context + 1
        self.stride = sub * chunk_size
        self.window = (chunk_size - 1) * sub + self.context
        self.frame_seconds = sub * frame_shift / 1000
        self.reset()

    @classmethod
    def from_config(cls, cfg: DictConfig, model: torch.nn.Module, **kwargs) -> StreamingSession:
        """A session for `model` with the tokenizer and feature settings of its experiment
        config `cfg` (what `wenet_eff.model.load_model` returns); kwargs as the constructor's."""
        data = cfg.data
        kwargs.setdefault("sample_rate", data.sample_rate)
        kwargs.setdefault("num_mel_bins", data.num_mel_bins)
        kwargs.setdefault("frame_length", data.frame_length)
        kwargs.setdefault("frame_shift", data.frame_shift)
        return cls(model, build_tokenizer(cfg.tokenizer), **kwargs)

    def reset(self) -> None:
        """Forget the current utterance: features, caches, beam, endpoint state."""
        self._fbank = fbank_extractor(*self.fbank_opts)
        self._feats_read = 0  # fbank frames moved into the buffer
        self._buffer = torch.zeros(0, self.fbank_opts[1])  # frames not consumed by a chunk
        self._att_cache = torch.zeros(0, 0, 0, 0)
        self._cnn_cache = torch.zeros(0, 0, 0, 0)
        self._offset = 0
        self._encoder_out: list[torch.Tensor] = []
        self._ctc_log_probs: list[torch.Tensor] = []
        self._beam = CtcPrefixBeam(
            self.beam_size,
            self.model.special.blank,
            lm=self.lm,
            min_token_logp=self.min_token_logp,
            context=self.context_graph,
        )
        self._trailing_silence = 0  # encoder frames
        self._finished = False

    # ------------------------------------------------------------------ streaming

    def accept_waveform(self, samples, sample_rate: int | None = None) -> StreamingResult:
        """Feed the next piece of audio and decode every chunk it completes.

        Args:
            samples: 1-D float samples in [-1, 1], or int16 samples (numpy or torch).
            sample_rate: Hz; must equal the model's (resample before streaming).
        Returns:
            the partial result after this piece.
        """
        if self._finished:
            raise RuntimeError("finalize() ended this utterance; call reset() before feeding more")
        rate = self.sample_rate if sample_rate is None else sample_rate
        if rate != self.sample_rate:
            raise ValueError(
                f"audio at {rate} Hz but the model takes {self.sample_rate} Hz; resample first"
            )
        wav = samples.numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
        if wav.ndim != 1:
            raise ValueError(f"expected 1-D samples of one channel, got shape {wav.shape}")
        scale = 1.0 if wav.dtype == np.int16 else INT16_SCALE
        self._fbank.accept_waveform(float(rate), wav.astype(np.float32) * scale)
        self._pull_features()
        if self.chunk_size > 0:
            while self._buffer.size(0) >= self.window:
                self._decode_chunk()
        return self.partial()

    def partial(self) -> StreamingResult:
        """The best CTC prefix so far, with the endpoint decision."""
        best = self._beam.nbest()[0]
        return StreamingResult(
            best.tokens,
            self._text(best.tokens),
            endpoint=self.is_endpoint(),
            frames=self._beam.frames,
            token_frames=self._beam.token_frames(best.tokens),
        )

    def is_endpoint(self) -> bool:
        """Whether an endpoint rule fires at the frames decoded so far."""
        rules = self.endpoint_config.rules
        if not rules or self._beam.frames == 0:
            return False
        decoded = bool(self._beam.nbest()[0].tokens)
        silence = self._trailing_silence * self.frame_seconds
        length = self._beam.frames * self.frame_seconds
        return any(rule.fires(decoded, silence, length) for rule in rules)

    def finalize(self) -> StreamingResult:
        """End of input: decode the frames left (a last, shorter chunk), then rescore the CTC
        n-best with the attention decoders over the whole utterance's encoder output."""
        if not self._finished:
            self._fbank.input_finished()
            self._pull_features()
            if self.chunk_size > 0:
                while self._buffer.size(0) >= self.context:
                    self._decode_chunk()
            elif self._buffer.size(0) >= self.context:
                self._decode_full()
            self._finished = True
        if not self._encoder_out:
            return StreamingResult([], self._text([]), final=True)
        encoder_out = torch.cat(self._encoder_out, dim=1)
        mask = torch.ones(1, 1, encoder_out.size(1), dtype=torch.bool, device=encoder_out.device)
        best = attention_rescoring(
            self.model,
            [self._beam.nbest()],
            encoder_out,
            mask,
            self.ctc_weight,
            self.reverse_weight,
        )[0]
        return StreamingResult(
            best.tokens,
            self._text(best.tokens),
            final=True,
            endpoint=self.is_endpoint(),
            frames=self._beam.frames,
            token_frames=self._beam.token_frames(best.tokens),
        )

    def has_input(self) -> bool:
        """Whether audio was fed since the last reset."""
        return self._fbank.num_frames_ready > 0 or self._beam.frames > 0

    def nbest(self) -> list[Hypothesis]:
        """The CTC prefix beam's current n-best (scores: CTC log probabilities)."""
        return self._beam.nbest()

    def ctc_log_probs(self) -> torch.Tensor:
        """(T, V) CTC log posteriors of every encoder frame decoded so far."""
        if not self._ctc_log_probs:
            return torch.zeros(0, self.model.vocab_size)
        return torch.cat(self._ctc_log_probs, dim=0)

    def encoder_out(self) -> torch.Tensor:
        """(1, T, D) encoder output of every frame decoded so far."""
        if not self._encoder_out:
            return torch.zeros(1, 0, self.model.encoder.output_size())
        return torch.cat(self._encoder_out, dim=1)

    # ------------------------------------------------------------------ internals

    def _text(self, tokens: list[int]) -> str:
        return self.tokenizer.detokenize(tokens)[0] if self.tokenizer is not None else ""

    def _pull_features(self) -> None:
        ready = self._fbank.num_frames_ready
        if ready > self._feats_read:
            new = read_frames(self._fbank, self._feats_read, ready)
            self._buffer = torch.cat([self._buffer, new], dim=0)
            self._feats_read = ready

    def _device(self) -> torch.device:
        """Where the model is: features (computed on the CPU) go there."""
        return self.model.ctc.ctc_lo.weight.device

    @torch.inference_mode()
    def _decode_chunk(self) -> None:
        chunk = self._buffer[: self.window].unsqueeze(0).to(self._device())
        required_cache_size = self.chunk_size * self.num_left_chunks
        out, self._att_cache, self._cnn_cache = self.model.encoder.forward_chunk(
            chunk, self._offset, required_cache_size, self._att_cache, self._cnn_cache
        )
        self._buffer = self._buffer[self.stride :]
        self._offset += out.size(1)
        self._consume(out)

    @torch.inference_mode()
    def _decode_full(self) -> None:
        feats = self._buffer.unsqueeze(0).to(self._device())
        out, _ = self.model.encoder(feats, torch.tensor([feats.size(1)], device=feats.device))
        self._buffer = self._buffer[:0]
        self._consume(out)

    def _consume(self, encoder_out: torch.Tensor) -> None:
        """CTC posteriors of new encoder frames: extend the beam, count trailing silence."""
        log_probs = self.model.ctc.log_softmax(encoder_out)[0].cpu()  # the beam runs here
        self._encoder_out.append(encoder_out)
        self._ctc_log_probs.append(log_probs)
        self._beam.advance(log_probs)
        blank = log_probs[:, self.model.special.blank]
        silent = (blank.exp() >= self.endpoint_config.blank_threshold).tolist()
        for frame_silent in silent:
            self._trailing_silence = self._trailing_silence + 1 if frame_silent else 0


def decode_stream(
    session: StreamingSession, pieces: Iterable, sample_rate: int | None = None
) -> Iterator[StreamingResult]:
    """Recognise a long stream split at endpoints: yields a partial result per piece and a
    final result (attention rescored) at each endpoint and at the end; the session is reset
    after each final result."""
    for piece in pieces:
        result = session.accept_waveform(piece, sample_rate)
        yield result
        if result.endpoint:
            yield session.finalize()
            session.reset()
    if session.has_input():
        yield session.finalize()
        session.reset()
