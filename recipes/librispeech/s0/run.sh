#!/usr/bin/env bash
# LibriSpeech recipe: U2++ Conformer (and the U2++ MoE paper's Dense-225M / MoE-1B / Dense-1B)
# on a local copy of LibriSpeech in its official layout ($corpus_dir/<subset>/<spk>/<chapter>/
# <spk>-<chapter>-<utt>.flac + <spk>-<chapter>.trans.txt); nothing is downloaded.
#
#   bash run.sh --corpus_dir /data/LibriSpeech                     # stages 0-7
#   bash run.sh --stage 4 --num_gpus 8                             # one node, 8 GPUs (DDP)
#   bash run.sh --stage 4 --num_gpus 8 --train_engine deepspeed --deepspeed_config conf/ds_stage2.json
#   bash run.sh --stage 4 --num_nodes 2 --node_rank 0 --master_addr node0 --num_gpus 8  # on node0
#   bash run.sh --stage 4 --num_nodes 2 --node_rank 1 --master_addr node0 --num_gpus 8  # on node1
#   bash run.sh --stage 4 --stop_stage 7 --model paper_moe_1b --train_config conf/train_paper.yaml \
#     --dir exp/paper_moe_1b
#   bash run.sh --stage 8 --stop_stage 9                          # streaming fine-tuning of $dir
#   bash run.sh --stage 10 --stop_stage 11                        # QAT int4/int2, 2:4 sparsity
#   bash run.sh --stage 12                                        # tables and plots of all exp dirs
#
# Every stage is restartable: outputs that exist are kept (--force true redoes them), and
# training resumes from the newest checkpoint.
set -euo pipefail
. ./path.sh

corpus_stages() { :; }  # none: stage 0 is the data preparation, 1-12 the shared stages

. tools/recipe_defaults.sh
corpus_dir=/data/LibriSpeech
train_subsets="train-clean-100 train-clean-360 train-other-500"
dev_subsets="dev-clean dev-other"
test_subsets="test-clean test-other dev-clean dev-other"
test_sets=""            # default: the data dirs of --test_subsets (test-clean -> test_clean)
token_type=bpe
nbpe=5000
help_message=$(recipe_help)
. tools/parse_options.sh
. tools/recipe_lib.sh

# data dir names: dev-clean -> dev_clean
data_name() { echo "${1//-/_}"; }
if [ -z "$test_sets" ]; then
  for subset in $test_subsets; do test_sets="$test_sets $(data_name "$subset")"; done
  test_sets=${test_sets# }
fi

# Concatenate the Kaldi data dirs $2... into $1 (sorted by key).
combine_data() {
  local out=$1 f
  shift
  mkdir -p "$out"
  for f in wav.scp text utt2dur; do
    for src in "$@"; do cat "$src/$f"; done | LC_ALL=C sort -k1,1 -u > "$out/$f"
  done
  python tools/make_raw_list.py "$out/wav.scp" "$out/text" "$out/data.list"
}

if run_stage 0; then
  echo "  from $corpus_dir ($train_subsets | $dev_subsets | $test_subsets)"
  for subset in $train_subsets $dev_subsets $test_subsets; do
    out=data/$(data_name "$subset")
    if needs "$out/data.list"; then
      python local/prepare_librispeech.py --nj "$nj" "$corpus_dir/$subset" "$out"
      python tools/make_raw_list.py "$out/wav.scp" "$out/text" "$out/data.list"
    fi
  done
  # shellcheck disable=SC2046  # one directory per subset
  if needs data/train/data.list; then
    combine_data data/train $(for s in $train_subsets; do echo "data/$(data_name "$s")"; done)
  fi
  # shellcheck disable=SC2046
  if needs data/dev/data.list; then
    combine_data data/dev $(for s in $dev_subsets; do echo "data/$(data_name "$s")"; done)
  fi
  echo "  wrote data/{train,dev,${test_sets// /,}}/{wav.scp,text,utt2dur,data.list}"
fi

. tools/recipe_stages.sh
