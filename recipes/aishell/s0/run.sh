#!/usr/bin/env bash
# AISHELL-1 recipe: U2++ Conformer on characters, from a local copy of the corpus in its
# official layout ($corpus_dir/data_aishell/wav/{train,dev,test}/<spk>/*.wav, extracted, and
# data_aishell/transcript/aishell_transcript_v0.8.txt); nothing is downloaded. Stages 1-12 are
# tools/recipe_stages.sh (as in the LibriSpeech recipe); WER is scored on characters (CER).
#
#   bash run.sh --corpus_dir /data/aishell                       # stages 0-7
#   bash run.sh --stage 4 --num_gpus 8                           # one node, 8 GPUs (DDP)
#   bash run.sh --stage 8 --stop_stage 9                         # streaming fine-tuning
#
# Every stage is restartable: outputs that exist are kept (--force true redoes them), and
# training resumes from the newest checkpoint.
set -euo pipefail
. ./path.sh

corpus_stages() { :; }  # none: stage 0 is the data preparation, 1-12 the shared stages

. tools/recipe_defaults.sh
corpus_dir=/data/aishell
test_sets="test dev"
normalize=chinese
wer_char=1
max_epoch=360
help_message=$(recipe_help)
. tools/parse_options.sh
. tools/recipe_lib.sh

if run_stage 0; then
  echo "  from $corpus_dir/data_aishell"
  if needs data/train/data.list || needs data/test/data.list; then
    python local/prepare_aishell.py --nj "$nj" "$corpus_dir" data
    for x in train dev test; do
      python tools/make_raw_list.py "data/$x/wav.scp" "data/$x/text" "data/$x/data.list"
    done
  fi
  echo "  wrote data/{train,dev,test}/{wav.scp,text,utt2dur,data.list}"
fi

. tools/recipe_stages.sh
