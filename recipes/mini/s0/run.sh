#!/usr/bin/env bash
# The mini recipe: a U2++ Conformer trained on ~6 h of English synthesised with offline TTS
# voices (flite, festival, espeak-ng with hundreds of accent x variant speakers, piper), tested
# on held-out synthetic speech (`test`) and on real recorded telephone prompts (`test_real`,
# Asterisk core sounds, never trained on). Stages 1-12 are tools/recipe_stages.sh, as in every
# recipe; this recipe adds -1 (synthesis) and 20-22 (adaptation, lr sweep): run.sh --help.
#
#   bash run.sh                          # everything, stage -1 to 7 (6-7: C++ runtime)
#   bash run.sh --stage 4 --stop_stage 5 --model mini --dir exp/mini   # dense FFNs instead of MoE
#   bash run.sh --stage 4 --nproc 2      # CPU DDP with torchrun
#   bash run.sh --stage 4 --num_gpus 2 --train_engine deepspeed --deepspeed_config conf/ds_stage2.json
#   bash run.sh --stage 8 --stop_stage 9   # streaming fine-tuning of $dir, WER per chunk size
#   bash run.sh --stage 10 --stop_stage 11 --compress_configs "none qat_int8 qat_int4 sparse_2_4"
#   bash run.sh --stage 12 --stop_stage 12 # tables and plots of every experiment
#   bash run.sh --stage 20 --stop_stage 21 # held-out voices: S3-Router masks vs fine-tuning
#   bash run.sh --stage 22 --stop_stage 22 # lr sweep of the stability variants (QK-LN, ...)
#
# Stages skip work whose outputs exist; --force true redoes them.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

corpus_stages() {
  cat << 'EOF'
  -1  real test prompts (Asterisk), sentence generation, speech synthesis into data/local
  20  held-out voices: domain data sets, fine-tuning all weights vs S3-Router masks
  21  held-out voices: mask files, decode the domain test sets, adaptation table, mask similarity
  22  learning-rate sweep of the stability variants (short runs from scratch)
EOF
}

. tools/recipe_defaults.sh
seed=7
num_sentences=8000      # ~6.5 h of speech
lexicon_size=20         # N words per open-class word list (0: all; 20 gives ~840 words)
num_test=200            # test-only sentences (half spoken by voices never in train)
num_dev=150
max_test_real=0         # >0: only the first N real prompts (quick trials and tests)
# domain adaptation (stages 20-21): per held-out voice, a small adaptation set; S3-Router
# masks over the frozen base vs fine-tuning all weights, same data and updates
adapt_voices="flite-awb espeak-en-gb-scotland-f5"
num_adapt=300           # adaptation utterances per voice (training sentences)
num_adapt_dev=50        # domain dev and test utterances (dev/test sentences)
num_adapt_test=300
adapt_steps=150
adapt_lr=0.0005         # fine-tuning all weights
router_lr=0.02          # S3-Router scores (1e-3 and 5e-3 adapted less on flite-awb)
router_opts=""          # more overrides of the S3-Router run, e.g. "compress.sparsity.roles=[...]"
adapt_warmup=15
# learning-rate sweep (stage 22): short from-scratch runs per stability variant and lr
sweep_dir=exp/lr_sweep
sweep_model=mini        # the model of the sweep runs (the dense mini)
sweep_variants="none qk_norm qk_norm_cap qkv_norm"
sweep_lrs="0.003 0.006 0.012 0.024"
sweep_steps=400         # updates per run (constant lr after the warmup)
sweep_warmup=40
sweep_frames=3000       # max_frames_in_batch of each run ($nproc runs at a time, 1 thread each)
sweep_max_logit=10000   # attention logits above this count as runaway growth (0: off)
# the shared options this recipe sets otherwise (tools/recipe_defaults.sh)
stage=-1
nj=2
test_sets="test test_real"
runtime_formats=pt2     # what stage 7 decodes with; "pt2 onnx" adds the onnxruntime graphs
data_type=raw
num_utts_per_shard=500
nbpe=300
# `mini_moe`: the mini U2++ Conformer with every FFN an 8-expert top-2 MoE of the same active
# size; at the same budget it is far more accurate than the dense `mini`
model=mini_moe
dir=exp/mini_moe
train_config=conf/train_mini.yaml
max_epoch=100           # conf/train_mini.yaml stops at train.max_steps first
nproc=2
average_num=2
lm_order=3              # word 3-gram of the training text; weight, bonus and beam tuned on dev
lm_weight=1.2
word_bonus=5
lm_beam_size=40
lm_min_token_logp=-9.2  # expand only tokens with p >= 1e-4 per frame (makes beam 40 affordable)
ft_steps=400
ft_lr=0.001
ft_warmup=50
ft_average_num=2
decoding_chunks="4 8 16 -1"
streaming_test_sets="test"
compress_configs="none qat_int8 qat_int4 sparse_2_4 sparse_2_4_step sparse_1_4"
compress_steps=300
compress_warmup=30
compress_test_sets="test"
help_message=$(recipe_help)
. tools/parse_options.sh
. tools/recipe_lib.sh

if run_stage -1; then
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
  echo "  wrote data/local/test_real/{text,names,exclude.txt}, data/local/sentences.tsv," \
    "data/local/synth/{wav/,wav.scp,text,utt2voice,utt2split,utt2dur}"
fi

if run_stage 0; then
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
  echo "  wrote data/{train,dev,test,test_real}/{wav.scp,text,utt2dur,data.list}"
fi

. tools/recipe_stages.sh

if run_stage 20; then
  echo "  $init_checkpoint to $adapt_voices"
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
  echo "  wrote data/domain_<voice>/{adapt,dev,test}, ${dir}_adapt_<voice>_{full,router}/"
fi

if run_stage 21; then
  masks=()
  for voice in $adapt_voices; do
    dom=domain_$voice/test
    router=${dir}_adapt_${voice}_router
    full=${dir}_adapt_${voice}_full
    python -m wenet_eff.bin.masks save --config "$router/train.yaml" \
      --checkpoint "$router/final.pt" --base "$init_checkpoint" --out "$router/masks.pt"
    masks+=("$router/masks.pt")
    decode_and_score "$init_checkpoint" "$dom" "$dir/$dom" "$compress_modes" -1
    decode_and_score "$full/final.pt" "$dom" "$full/$dom" "$compress_modes" -1
    # the shared base checkpoint plus this domain's mask file
    decode_and_score "$init_checkpoint" "$dom" "$router/$dom" "$compress_modes" -1 \
      "--masks $router/masks.pt"
  done
  if [ "${#masks[@]}" -ge 2 ]; then
    python -m wenet_eff.bin.masks compare "${masks[0]}" "${masks[1]}" \
      --json "$dir/adapt_mask_iou.json" --plot "$dir/adapt_mask_iou.png" > "$dir/adapt_mask_iou.txt"
    grep "all layers" "$dir/adapt_mask_iou.txt"
  fi
  # shellcheck disable=SC2086  # a list of voices
  python local/adapt_table.py --dir "$dir" --init_checkpoint "$init_checkpoint" \
    --modes "$compress_modes" --json "$dir/adapt_table.json" $adapt_voices > "$dir/adapt_table.md"
  cat "$dir/adapt_table.md"
  echo "  wrote ${dir}_adapt_<voice>_router/masks.pt, $dir/adapt_table.{md,json}," \
    "$dir/adapt_mask_iou.{txt,json,png}"
fi

if run_stage 22; then
  echo "  $sweep_variants at lr $sweep_lrs into $sweep_dir"
  [ "$force" = true ] && rm -rf "$sweep_dir"
  # shellcheck disable=SC2086  # lists of variants, learning rates and overrides
  python -m wenet_eff.bin.lr_sweep --out "$sweep_dir" --config_dir "$PWD/conf" \
    --config_name "$(basename "$train_config" .yaml)" --variants $sweep_variants \
    --lrs $sweep_lrs --steps "$sweep_steps" --warmup "$sweep_warmup" --jobs "$nproc" \
    --max_logit "$sweep_max_logit" -- \
    model="$sweep_model" data.train_data="data/train/$list_name" \
    data.cv_data="data/dev/$list_name" data.data_type="$data_type" \
    $tokenizer_opts cmvn.file=data/train/global_cmvn data.max_frames_in_batch="$sweep_frames" \
    $train_opts | tee "$sweep_dir.txt"
  echo "  wrote $sweep_dir/{sweep.json,linear_norms.png}, $sweep_dir.txt"
fi
