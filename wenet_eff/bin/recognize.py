"""Decode a test set with one or more methods (WeNet's recognize.py flags).

    python -m wenet_eff.bin.recognize --config exp/mini/train.yaml --checkpoint exp/mini/avg_5.pt \
        --test_data data/test/data.list --modes ctc_greedy_search attention_rescoring \
        --result_dir exp/mini/test

Writes `<result_dir>/<mode>/text` (`key hypothesis` lines) and prints RTF per run. WeNet's
run.sh flags work as they are: `--gpu N` (-1: the CPU) / `--device`, `--override_config 'key.path
value'` (WeNet's keys or ours), `--blank_penalty 0.0 --length_penalty 0.0` (other values are
refused: not implemented); WeNet flags of decoders wenet_eff lacks are refused, named.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from wenet_eff.bin.wenet_flags import RECOGNIZE_REFUSED, override_config, refuse_unknown
from wenet_eff.data.batching import INFORMATIONAL_REASONS
from wenet_eff.model import DECODE_METHODS, load_model


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="experiment train.yaml (ours or WeNet's)")
    p.add_argument(
        "--checkpoint", required=True, help="model state_dict (.pt) or a packed model (bin.pack)"
    )
    p.add_argument(
        "--masks", default="", help="a mask file (bin.masks save) applied to --checkpoint"
    )
    p.add_argument("--test_data", required=True, help="data.list or shard list")
    p.add_argument("--data_type", default="raw", choices=["raw", "shard"])
    p.add_argument("--modes", nargs="+", default=["attention_rescoring"], choices=DECODE_METHODS)
    p.add_argument("--result_dir", required=True)
    p.add_argument("--beam_size", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--ctc_weight", type=float, default=0.0, help="CTC weight in rescoring")
    p.add_argument("--reverse_weight", type=float, default=0.0, help="r2l weight in rescoring")
    p.add_argument(
        "--lm",
        default="",
        help="word n-gram LM (ARPA, bin.train_lm) fused into "
        "ctc_prefix_beam_search and attention_rescoring",
    )
    p.add_argument("--lm_weight", type=float, default=0.5, help="weight of the LM's log probs")
    p.add_argument("--word_bonus", type=float, default=1.0, help="score added per word with --lm")
    p.add_argument(
        "--min_token_logp",
        type=float,
        default=None,
        help="prefix beam search: expand only tokens with a log posterior >= this per frame "
        "(e.g. -9.2 = log 1e-4; default: the top beam_size tokens of every frame)",
    )
    p.add_argument(
        "--context_path",
        default="",
        help="context biasing (hotwords): a file of phrases, one per line, boosted in "
        "ctc_prefix_beam_search and attention_rescoring",
    )
    p.add_argument(
        "--context_score", type=float, default=3.0, help="boost per matched token of a phrase"
    )
    p.add_argument("--decoding_chunk_size", type=int, default=-1)
    p.add_argument("--num_decoding_left_chunks", type=int, default=-1)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--gpu", type=int, default=-1, help="GPU id (WeNet's); -1: the CPU")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: GPU --gpu")
    p.add_argument("--blank_penalty", type=float, default=0.0, help="WeNet's; 0 only")
    p.add_argument("--length_penalty", type=float, default=0.0, help="WeNet's; 0 only")
    p.add_argument(
        "--override_config", action="append", default=[], help="WeNet's 'key.path value'"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = get_parser()
    args, unknown = parser.parse_known_args(argv)
    refuse_unknown(parser, unknown, RECOGNIZE_REFUSED)
    for flag in ("blank_penalty", "length_penalty"):
        if getattr(args, flag):
            parser.error(f"--{flag} {getattr(args, flag)}: not implemented (only 0.0)")
    try:
        overrides = [*args.override, *override_config(args.override_config)]
    except ValueError as exc:
        parser.error(str(exc))
    device = torch.device("cpu")
    if args.gpu >= 0 or args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--gpu {args.gpu} --device {args.device}: no CUDA device here "
                         "(--gpu -1 decodes on the CPU)")  # fmt: skip
        device = torch.device(f"cuda:{max(args.gpu, 0)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from wenet_eff.data.dataset import build_dataloader
    from wenet_eff.data.tokenizer import build_tokenizer

    cfg, model = load_model(args.config, args.checkpoint, overrides, args.masks)
    model.to(device)
    cfg.data.data_type = args.data_type
    cfg.data.batch_type = "static"
    cfg.data.batch_size = args.batch_size
    cfg.data.num_workers = args.num_workers
    cfg.data.speed_perturb = False
    # decode every utterance the features allow: training-time length filters do not apply
    cfg.data.filter.max_length = 10**9
    # the shortest input the subsampling front end turns into one encoder frame
    cfg.data.filter.min_length = model.encoder.embed.right_context + 1
    cfg.data.filter.token_max_length = 10**9
    cfg.data.filter.token_min_length = 0
    tokenizer = build_tokenizer(cfg.tokenizer)
    loader, _ = build_dataloader(cfg.data, args.test_data, tokenizer, train=False)
    lm = None
    if args.lm:
        from wenet_eff.decode.lm import NgramLM, WordLmFusion

        lm = WordLmFusion(
            NgramLM.read_arpa(args.lm), tokenizer.word_pieces(), args.lm_weight, args.word_bonus
        )
        logging.info(
            "LM %s: %d-gram, %d words, weight %g, word bonus %g",
            *(args.lm, lm.lm.order, len(lm.lm.vocab), args.lm_weight, args.word_bonus),
        )
    context = None
    if args.context_path:
        from wenet_eff.decode.context import ContextGraph

        context = ContextGraph.from_file(
            args.context_path,
            tokenizer.symbol_table,
            getattr(tokenizer, "split_with_space", False),
            args.context_score,
        )
        logging.info(
            "context %s: %d phrases, score %g",
            *(args.context_path, context.num_phrases, args.context_score),
        )

    out_dir = Path(args.result_dir)
    files = {}
    for mode in args.modes:
        (out_dir / mode).mkdir(parents=True, exist_ok=True)
        files[mode] = open(out_dir / mode / "text", "w", encoding="utf-8")
    skipped: dict[str, int] = {}  # by reason; INFORMATIONAL_REASONS count kept utterances
    audio_seconds = decode_seconds = 0.0
    num_utts = 0
    with torch.inference_mode():
        for batch in tqdm(loader, desc="decode", unit="batch", mininterval=5):
            for reason, count in batch["skipped"].items():
                skipped[reason] = skipped.get(reason, 0) + count
            if not batch["keys"]:
                continue
            start = time.perf_counter()
            results = model.decode(
                args.modes,
                batch["feats"].to(device),
                batch["feats_lengths"].to(device),
                beam_size=args.beam_size,
                decoding_chunk_size=args.decoding_chunk_size,
                num_decoding_left_chunks=args.num_decoding_left_chunks,
                ctc_weight=args.ctc_weight,
                reverse_weight=args.reverse_weight,
                lm=lm,
                min_token_logp=args.min_token_logp,
                context=context,
            )
            decode_seconds += time.perf_counter() - start
            audio_seconds += float(batch["feats_lengths"].sum()) * cfg.data.frame_shift / 1000
            num_utts += len(batch["keys"])
            for mode, hyps in results.items():
                for key, hyp in zip(batch["keys"], hyps, strict=True):
                    text, _ = tokenizer.detokenize(hyp.tokens)
                    files[mode].write(f"{key} {text}\n")
    for f in files.values():
        f.close()
    notes = {r: n for r, n in skipped.items() if r in INFORMATIONAL_REASONS}
    skipped = {r: n for r, n in skipped.items() if r not in INFORMATIONAL_REASONS}
    summary = {
        "utterances": num_utts,
        "skipped": skipped,
        "notes": notes,
        "audio_seconds": round(audio_seconds, 2),
        "decode_seconds": round(decode_seconds, 3),
        "rtf_all_modes": round(decode_seconds / max(audio_seconds, 1e-9), 4),
        "threads": torch.get_num_threads(),
        "modes": args.modes,
        "beam_size": args.beam_size,
        "min_token_logp": args.min_token_logp,
        "lm": {"path": args.lm, "weight": args.lm_weight, "word_bonus": args.word_bonus}
        if args.lm
        else None,
        "context": {"path": args.context_path, "score": args.context_score}
        if args.context_path
        else None,
    }
    (out_dir / "decode_summary.json").write_text(json.dumps(summary, indent=2))
    logging.info(
        "decoded %d utterances (skipped %s, notes %s) into %s",
        *(num_utts, skipped or 0, notes or "none", out_dir),
    )
    logging.info(
        "RTF %.4f for %s together (%d threads)",
        summary["rtf_all_modes"],
        args.modes,
        summary["threads"],
    )
    return summary


if __name__ == "__main__":
    main()
