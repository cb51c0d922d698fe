#!/usr/bin/env bash
# The mini recipe: a U2++ Conformer trained on ~6 h of English synthesised with offline TTS
# voices (flite, festival, espeak-ng with hundreds of accent x variant speakers, piper), tested on held-out synthetic speech (`test`) and
# on real recorded telephone prompts (`test_real`, Asterisk core sounds, never trained on).
#
#   bash run.sh                          # everything, stage -1 to 7 (6-7: C++ runtime)
#   bash run.sh --stage 4 --stop_stage 5 --model mini --dir exp/mini   # dense FFNs instead of MoE
#   bash run.sh --stage 4 --nproc 2      # CPU DDP with torchrun
#   bash run.sh --stage 4 --num_gpus 2 --train_engine deepspeed --deepspeed_config conf/ds_stage2.json
#   bash run.sh --stage 8 --stop_stage 9   # streaming fine-tuning of $dir, WER per chunk size
#   bash run.sh --stage 10 --stop_stage 11 --qat_configs "qat_int8 qat_int4 binary"   # QAT + pack
#   bash run.sh --stage 12 --stop_stage 13 --sparse_configs "sparse_2_4 sparse_1_4"  # N:M sparsity
#   bash run.sh --stage 14 --stop_stage 15   # held-out voices: S3-Router masks vs fine-tuning
#   bash run.sh --stage 16 --stop_stage 16   # lr sweep of the stability variants (QK-LN, ...)
#
# Stages skip work whose outputs exist; --force true redoes them.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

stage=-1
stop_stage=7            # stages 8-17 (streaming, QAT, sparsity, adaptation, lr sweep, tables) on request
force=false
nj=2                    # parallel processes for synthesis, audio decoding, CMVN and shards
seed=7
num_sentences=8000      # ~6.5 h of speech
lexicon_size=20         # N words per open-class word list (0: all; 20 gives ~840 words)
num_test=200            # test-only sentences (half spoken by voices never in train)
num_dev=150
max_test_real=0         # >0: only the first N real prompts (quick trials and tests)
data_type=raw           # raw | shard
num_utts_per_shard=500
token_type=char         # char | bpe
nbpe=300
# packaged model config: `mini_moe` is the mini U2++ Conformer with every FFN an 8-expert top-2
# MoE of the same active size; at the same budget it is far more accurate than the dense `mini`
model=mini_moe
dir=exp/mini_moe
num_gpus=0              # > 0: torchrun with one process per GPU
nproc=2                 # CPU processes (1 thread each) for torchrun DDP when num_gpus=0
train_engine=torch_ddp  # torch_ddp | deepspeed
deepspeed_config=conf/ds_stage2.json
max_epoch=100           # conf/train_mini.yaml stops at train.max_steps first
train_config=conf/train_mini.yaml  # the recipe's training config (packaged train.yaml + these)
train_opts=""           # extra Hydra overrides for training, e.g. "optim.lr=0.001"
average_num=2
decode_modes="ctc_greedy_search ctc_prefix_beam_search attention attention_rescoring"
# Word 3-gram LM of the training transcripts (stage 2; lm_order 0: none, or --lm_path x.arpa),
# fused into prefix beam search and kept in rescoring (stage 5: <test_set>/lm/<mode>); weight,
# word bonus and beam tuned on dev (README)
lm_order=3
lm_path=""
lm_weight=1.2
word_bonus=5
lm_beam_size=40
lm_min_token_logp=-9.2  # expand only tokens with p >= 1e-4 per frame (makes beam 40 affordable)
lm_modes="ctc_prefix_beam_search attention_rescoring"
# Fine-tuning stages (8, 10) start from $init_checkpoint (default: $dir/avg_$average_num.pt)
init_checkpoint=""
# Streaming fine-tuning (stages 8-9) of $dir's averaged model into $streaming_dir
streaming_dir=""        # default: ${dir}_streaming
ft_steps=400            # updates of the fine-tuning (cosine schedule to 0)
ft_lr=0.001
ft_warmup=50
decoding_chunks="4 8 16 -1"  # encoder frames per chunk (40 ms each); -1 = full context
num_decoding_left_chunks=-1
streaming_modes="ctc_greedy_search ctc_prefix_beam_search attention_rescoring"
streaming_test_sets="test"
# Quantization-aware fine-tuning (stages 10-11) of $dir's averaged model, one run per config;
# "none" is the float control (the same fine-tuning without quantizers)
qat_configs="none qat_int8 qat_int4"  # packaged compress configs (wenet_eff/conf/compress/)
qat_steps=300
qat_lr=0.0005
qat_warmup=30
qat_modes="ctc_greedy_search attention_rescoring"
# Sparse fine-tuning (stages 12-13) of $init_checkpoint, one run per config; the float
# control is the QAT stage's ${dir}_none (the same fine-tuning without compression)
sparse_configs="sparse_2_4 sparse_2_4_step sparse_1_4"
sparse_steps=300
sparse_lr=0.0005
sparse_warmup=30
# Domain adaptation (stages 14-15): per held-out voice, a small adaptation set; S3-Router masks
# over the frozen base vs fine-tuning all weights, same data and updates
adapt_voices="flite-awb espeak-en-gb-scotland-f5"
num_adapt=300          # adaptation utterances per voice (training sentences)
num_adapt_dev=50       # domain dev and test utterances (dev/test sentences)
num_adapt_test=300
adapt_steps=150
adapt_lr=0.0005        # fine-tuning all weights
router_lr=0.02         # S3-Router scores (1e-3 and 5e-3 adapted less on flite-awb)
router_opts=""         # more overrides of the S3-Router run, e.g. "compress.sparsity.roles=[...]"
adapt_warmup=15
# Learning-rate sweep (stage 16): short from-scratch runs per stability variant and lr
sweep_dir=exp/lr_sweep
sweep_model=mini       # the model of the sweep runs (the README's sweep: the dense mini)
sweep_variants="none qk_norm qk_norm_cap qkv_norm"
sweep_lrs="0.003 0.006 0.012 0.024"
sweep_steps=400        # updates per run (constant lr after the warmup)
sweep_warmup=40
sweep_frames=3000      # max_frames_in_batch of each run (2 runs at a time, 1 thread each)
sweep_max_logit=10000  # attention logits above this count as runaway growth (0: off)
# C++ runtime (stages 6-7): export $dir's averaged model, decode with decoder_main
runtime_precisions="fp32 int8"
runtime_int8=auto       # auto: int8 only on CPUs with int8 dot products (VNNI, AMX) | always
runtime_formats="pt2 onnx"  # exported graphs: pt2 for decoder_main, onnx for onnxruntime users
runtime_chunk_size=16   # the streaming step's chunk (encoder frames) ...
runtime_left_chunks=4   # ... and left chunks kept in its cache
runtime_chunks=""       # decoded chunk sizes (-1: full context); default "-1 $runtime_chunk_size"
runtime_threads=1
# Tables (stage 17): every exp/* with a train.yaml, plus these benchmark JSON files
tables_bench=""         # e.g. "exp/runtime_rtf.json" (python -m wenet_eff.bin.benchmark runtime_rtf)
test_sets="test test_real"
beam_size=10
decode_batch_size=16
ctc_weight=0.3
reverse_weight=0.5
help_message="Usage: $0 [--stage N] [--stop_stage N] [--force true|false] [--nj N]
  [--num_sentences N] [--max_test_real N] [--data_type raw|shard] [--token_type char|bpe] [--nbpe N] [--model NAME] [--dir exp/NAME]
  [--num_gpus N | --nproc N] [--train_engine torch_ddp|deepspeed] [--max_epoch N]
  [--train_config conf/X.yaml] [--train_opts 'hydra overrides'] [--average_num N] [--decode_modes '...']
  [--lm_order N | --lm_path lm.arpa] [--lm_weight X] [--word_bonus X] [--lm_beam_size N]
  [--lm_min_token_logp X]
  [--streaming_dir exp/NAME] [--ft_steps N] [--ft_lr X] [--decoding_chunks '4 8 16 -1']
  [--qat_configs 'qat_int8 qat_int4 ...'] [--qat_steps N] [--qat_lr X] [--init_checkpoint PATH]
  [--runtime_precisions 'fp32 int8'] [--runtime_formats 'pt2 onnx'] [--runtime_chunk_size N] [--runtime_left_chunks N]
  [--runtime_chunks '-1 16'] [--runtime_threads N]"
. tools/parse_options.sh
. tools/recipe_lib.sh
[ -n "$runtime_chunks" ] || runtime_chunks="-1 $runtime_chunk_size"


if [ "$token_type" = bpe ]; then
  dict=data/dict/units_bpe${nbpe}.txt
  bpe_prefix=data/dict/bpe${nbpe}
else
  dict=data/dict/units.txt
  bpe_prefix=""
fi
tokenizer_opts="tokenizer.type=$token_type tokenizer.units=$dict"
[ "$token_type" = bpe ] && tokenizer_opts="$tokenizer_opts tokenizer.bpe_model=$bpe_prefix.model"

if run_stage -1; then
  echo "stage -1: test_real transcripts, sentence generation, speech synthesis"
  if needs data/local/test_real/exclude.txt; then
    python local/asterisk_prompts.py data/local/test_real
  fi
  if needs data/local/sentences.tsv; then
    python local/generate_sentences.py --num "$num_sentences" --seed "$seed" \
      --lexicon_size "$lexicon_size" \
      --exclude data/local/test_real/exclude.txt data/local/sentences.tsv
  fi
  if needs data/local/synth/wav.scp; then
    [ "$force" = true ] && rm -rf data/local/synth
    python local/synthesize.py --sentences data/local/sentences.tsv --seed "$seed" --nj "$nj" \
      --num_test "$num_test" --num_dev "$num_dev" data/local/synth
  fi
  echo "stage -1 wrote data/local/test_real/{text,names,exclude.txt}, data/local/sentences.tsv," \
    "data/local/synth/{wav/,wav.scp,text,utt2voice,utt2split,utt2dur}"
fi

if run_stage 0; then
  echo "stage 0: data prep (train dev test test_real)"
  if needs data/test_real/data.list || needs data/train/data.list; then
    python local/prepare_test_real.py --nj "$nj" --max_utts "$max_test_real" \
      data/local/test_real data/local/test_real/wav data/test_real
    python local/prepare_data.py --synth_dir data/local/synth \
      --exclude data/local/test_real/exclude.txt --test_real data/test_real data
    for x in train dev test test_real; do
      python tools/make_raw_list.py "data/$x/wav.scp" "data/$x/text" "data/$x/data.list"
    done
  else
    python local/prepare_data.py --synth_dir data/local/synth \
      --exclude data/local/test_real/exclude.txt --test_real data/test_real data
  fi
  echo "stage 0 wrote data/{train,dev,test,test_real}/{wav.scp,text,utt2dur,data.list}"
fi

if run_stage 1; then
  echo "stage 1: global CMVN of train"
  if needs data/train/global_cmvn; then
    python tools/compute_cmvn_stats.py --num_workers "$nj" \
      --in_data_list data/train/data.list --out_cmvn data/train/global_cmvn
  fi
  echo "stage 1 wrote data/train/global_cmvn"
fi

if run_stage 2; then
  echo "stage 2: dictionary ($token_type)"
  make_dict
  echo "stage 2 wrote $dict${bpe_prefix:+ and $bpe_prefix.model}"
fi

if run_stage 3; then
  echo "stage 3: training lists (data_type=$data_type)"
  make_shards
  if [ "$data_type" = shard ]; then
    echo "stage 3 wrote data/{train,dev}/shards.list and data/{train,dev}/shards/*.tar"
  else
    echo "stage 3: data_type=raw uses data/{train,dev}/data.list from stage 0 as they are"
  fi
fi

if [ "$data_type" = shard ]; then list_name=shards.list; else list_name=data.list; fi
streaming_dir=${streaming_dir:-${dir}_streaming}
init_checkpoint=${init_checkpoint:-$dir/avg_${average_num}.pt}

if run_stage 4; then
  echo "stage 4: training $dir ($train_engine, num_gpus=$num_gpus, nproc=$nproc)"
  if needs "$dir/final.pt"; then
    train_model "$dir" ""
  fi
  python tools/plot_training.py "$dir"
  echo "stage 4 wrote $dir/{train.yaml,N.pt,N.yaml,final.pt,training_curves.png}"
fi

if run_stage 5; then
  echo "stage 5: average $average_num checkpoints, decode $test_sets, score"
  decode_test_sets "$dir"
  echo "stage 5 wrote $dir/avg_${average_num}.pt, $dir/<test_set>/[lm/]<mode>/{text,wer}," \
    "$dir/wer_table.{md,json}"
fi

if run_stage 6; then
  echo "stage 6: export $dir/avg_${average_num}.pt to the C++ runtime ($runtime_formats)"
  export_runtime "$dir"
  echo "stage 6 wrote $dir/runtime_{$(echo "$runtime_precisions" | tr ' ' ',')}/"
fi

if run_stage 7; then
  echo "stage 7: C++ runtime (decoder_main) on $test_sets, chunk sizes $runtime_chunks, WER and RTF"
  runtime_decode "$dir" "$test_sets"
  echo "stage 7 wrote $dir/runtime_<precision>/<test_set>/chunk<N>/{text,wer,rtf.json}," \
    "$dir/runtime_table.{md,json}"
fi

if run_stage 8; then
  echo "stage 8: streaming fine-tuning of $init_checkpoint into $streaming_dir"
  if needs "$streaming_dir/final.pt"; then
    finetune "$streaming_dir" "$ft_steps" "$ft_lr" "$ft_warmup" train=streaming_finetune
  fi
  python tools/plot_training.py "$streaming_dir"
  echo "stage 8 wrote $streaming_dir/{train.yaml,N.pt,final.pt,training_curves.png}"
fi

if run_stage 9; then
  echo "stage 9: decode $streaming_dir at chunk sizes $decoding_chunks, score"
  average "$streaming_dir"
  decode_chunks "$streaming_dir/avg_${average_num}.pt" "$streaming_test_sets" "$streaming_modes"
  echo "stage 9 wrote $streaming_dir/<test_set>/{chunkN,full}/<mode>/{text,wer}," \
    "$streaming_dir/wer_table.{md,json}"
fi

if run_stage 10; then
  echo "stage 10: quantization-aware fine-tuning of $init_checkpoint: $qat_configs"
  finetune_each "$qat_configs" "$qat_steps" "$qat_lr" "$qat_warmup"
  echo "stage 10 wrote ${dir}_<config>/{train.yaml,N.pt,final.pt} for $qat_configs"
fi

if run_stage 11; then
  echo "stage 11: pack, decode the packed models, size x WER table"
  for qat in $qat_configs; do
    exp=${dir}_$qat
    average "$exp"
    if [ "$qat" = none ]; then  # the float control run: same fine-tuning, nothing to pack
      decode_and_score "$exp/avg_${average_num}.pt" test "$exp/test" "$qat_modes" -1
      continue
    fi
    python -m wenet_eff.bin.pack --config "$exp/train.yaml" \
      --checkpoint "$exp/avg_${average_num}.pt" --out "$exp/packed.pt"
    decode_and_score "$exp/packed.pt" test "$exp/test" "$qat_modes" -1
  done
  # relative WER against the float control (compress=none) when it is in the list
  mkdir -p "$dir"  # holds the table also when --init_checkpoint came from elsewhere
  float_dir=$dir
  case " $qat_configs " in *" none "*) float_dir=${dir}_none ;; esac
  # shellcheck disable=SC2046  # one directory per config
  python local/compress_table.py --float_dir "$float_dir" --modes "$qat_modes" \
    $(for qat in $qat_configs; do [ "$qat" = none ] || echo "${dir}_$qat"; done) \
    > "$dir/compress_table.md"
  cat "$dir/compress_table.md"
  echo "stage 11 wrote ${dir}_<config>/{packed.pt,packed.pt.size.json,test/}, $dir/compress_table.md"
fi

if run_stage 12; then
  echo "stage 12: sparse fine-tuning of $init_checkpoint: $sparse_configs"
  finetune_each "$sparse_configs" "$sparse_steps" "$sparse_lr" "$sparse_warmup"
  echo "stage 12 wrote ${dir}_<config>/{train.yaml,N.pt,final.pt} for $sparse_configs"
fi

if run_stage 13; then
  echo "stage 13: fold the masks (N:M checked), decode the folded models, sparsity x WER table"
  for sp in $sparse_configs; do
    exp=${dir}_$sp
    average "$exp"
    if needs "$exp/folded.pt"; then
      python -m wenet_eff.bin.masks fold --config "$exp/train.yaml" \
        --checkpoint "$exp/avg_${average_num}.pt" --out "$exp/folded.pt"
    fi
    if grep -A1 -E '^  quant:' "$exp/train.yaml" | grep -q 'enabled: true'; then
      # sparse + quantized (e.g. int4_sparse_2_4): pack (N:M storage) and decode the packed file
      python -m wenet_eff.bin.pack --config "$exp/train.yaml" \
        --checkpoint "$exp/avg_${average_num}.pt" --out "$exp/packed.pt"
      decode_and_score "$exp/packed.pt" test "$exp/test" "$qat_modes" -1
    else
      decode_and_score "$exp/folded.pt" test "$exp/test" "$qat_modes" -1 \
        "--config $exp/folded.yaml"
    fi
  done
  mkdir -p "$dir"  # holds the table also when --init_checkpoint came from elsewhere
  float_dir=$dir
  [ -d "${dir}_none/test" ] && float_dir=${dir}_none
  # shellcheck disable=SC2046  # one directory per config
  python local/sparse_table.py --float_dir "$float_dir" --modes "$qat_modes" \
    --json "$dir/sparse_table.json" $(for sp in $sparse_configs; do echo "${dir}_$sp"; done) \
    > "$dir/sparse_table.md"
  cat "$dir/sparse_table.md"
  echo "stage 13 wrote ${dir}_<config>/{folded.pt,folded.yaml,folded.pt.sparsity.json,test/}," \
    "$dir/sparse_table.{md,json}"
fi

if run_stage 14; then
  echo "stage 14: domain adaptation of $init_checkpoint to held-out voices: $adapt_voices"
  for voice in $adapt_voices; do
    dom=data/domain_$voice
    if needs "$dom/test/data.list"; then
      python local/make_domain.py --sentences data/local/sentences.tsv --data data \
        --voice "$voice" --num_adapt "$num_adapt" --num_dev "$num_adapt_dev" \
        --num_test "$num_adapt_test" --nj "$nj" --seed "$seed" "$dom"
    fi
    if needs "${dir}_adapt_${voice}_full/final.pt"; then  # fine-tune all weights
      finetune "${dir}_adapt_${voice}_full" "$adapt_steps" "$adapt_lr" "$adapt_warmup" "" \
        "$dom/adapt/data.list" "$dom/dev/data.list"
    fi
    if needs "${dir}_adapt_${voice}_router/final.pt"; then  # S3-Router: masks only
      finetune "${dir}_adapt_${voice}_router" "$adapt_steps" "$router_lr" "$adapt_warmup" \
        "compress=s3_router $router_opts" "$dom/adapt/data.list" "$dom/dev/data.list"
    fi
  done
  echo "stage 14 wrote data/domain_<voice>/{adapt,dev,test}, ${dir}_adapt_<voice>_{full,router}/"
fi

if run_stage 15; then
  echo "stage 15: mask files, decode the domain test sets, adaptation table, mask similarity"
  masks=()
  for voice in $adapt_voices; do
    dom=domain_$voice/test
    router=${dir}_adapt_${voice}_router
    full=${dir}_adapt_${voice}_full
    python -m wenet_eff.bin.masks save --config "$router/train.yaml" \
      --checkpoint "$router/final.pt" --base "$init_checkpoint" --out "$router/masks.pt"
    masks+=("$router/masks.pt")
    decode_and_score "$init_checkpoint" "$dom" "$dir/$dom" "$qat_modes" -1
    decode_and_score "$full/final.pt" "$dom" "$full/$dom" "$qat_modes" -1
    # the shared base checkpoint plus this domain's mask file
    decode_and_score "$init_checkpoint" "$dom" "$router/$dom" "$qat_modes" -1 \
      "--masks $router/masks.pt"
  done
  if [ "${#masks[@]}" -ge 2 ]; then
    python -m wenet_eff.bin.masks compare "${masks[0]}" "${masks[1]}" \
      --json "$dir/adapt_mask_iou.json" --plot "$dir/adapt_mask_iou.png" > "$dir/adapt_mask_iou.txt"
    grep "all layers" "$dir/adapt_mask_iou.txt"
  fi
  # shellcheck disable=SC2086  # a list of voices
  python local/adapt_table.py --dir "$dir" --init_checkpoint "$init_checkpoint" \
    --modes "$qat_modes" --json "$dir/adapt_table.json" $adapt_voices > "$dir/adapt_table.md"
  cat "$dir/adapt_table.md"
  echo "stage 15 wrote ${dir}_adapt_<voice>_router/masks.pt, $dir/adapt_table.{md,json}," \
    "$dir/adapt_mask_iou.{txt,json,png}"
fi

if run_stage 16; then
  echo "stage 16: lr sweep of stability variants ($sweep_variants) into $sweep_dir"
  [ "$force" = true ] && rm -rf "$sweep_dir"
  # shellcheck disable=SC2086  # lists of variants and learning rates
  python -m wenet_eff.bin.lr_sweep --out "$sweep_dir" --config_dir "$PWD/conf" \
    --config_name "$(basename "$train_config" .yaml)" --variants $sweep_variants \
    --lrs $sweep_lrs --steps "$sweep_steps" --warmup "$sweep_warmup" --jobs "$nproc" \
    --max_logit "$sweep_max_logit" -- \
    model="$sweep_model" data.train_data="data/train/$list_name" \
    data.cv_data="data/dev/$list_name" data.data_type="$data_type" \
    $tokenizer_opts cmvn.file=data/train/global_cmvn data.max_frames_in_batch="$sweep_frames" \
    $train_opts | tee "$sweep_dir.txt"
  echo "stage 16 wrote $sweep_dir/{sweep.json,linear_norms.png}, $sweep_dir.txt"
fi

if run_stage 17; then
  echo "stage 17: tables and plots (params, size, RTF, WER) of the experiments under exp/"
  experiment_tables "$test_sets" "$tables_bench"
  echo "stage 17 wrote exp/tables/{tables.md,tables.json,wer_vs_rtf.png,wer_vs_size.png}"
fi
