#!/usr/bin/env bash
# WenetSpeech recipe: U2++ Conformer on characters, from a local copy of the corpus in its
# official layout ($corpus_dir/WenetSpeech.json and $corpus_dir/audio/.../*.opus); nothing is
# downloaded. Segments (begin/end in the JSON) become data.list entries with start/end and are
# packed into shards. Stages 1-12 are tools/recipe_stages.sh (as in the LibriSpeech recipe);
# WER is scored on characters (CER).
#
#   bash run.sh --corpus_dir /data/wenetspeech --train_subset M  # stages 0-7 on the M subset
#   bash run.sh --stage 4 --num_nodes 2 --node_rank 0 --master_addr node0 --num_gpus 8
#
# Every stage is restartable: outputs that exist are kept (--force true redoes them), and
# training resumes from the newest checkpoint.
set -euo pipefail
. ./path.sh

corpus_stages() { :; }  # none: stage 0 is the data preparation, 1-12 the shared stages

. tools/recipe_defaults.sh
corpus_dir=/data/wenetspeech
train_subset=S          # S (100 h) | M (1,000 h) | L (10,000 h)
test_sets="test_net test_meeting"
normalize=chinese
wer_char=1
max_epoch=30
average_num=10
help_message=$(recipe_help)
. tools/parse_options.sh
. tools/recipe_lib.sh

if run_stage 0; then
  echo "  from $corpus_dir/WenetSpeech.json (train subset $train_subset)"
  train_set=train_$(echo "$train_subset" | tr '[:upper:]' '[:lower:]')
  if needs "data/$train_set/data.list" || needs data/test_meeting/data.list; then
    python local/prepare_wenetspeech.py --subsets "$train_subset DEV TEST_NET TEST_MEETING" \
      "$corpus_dir" data
    for x in $train_set dev test_net test_meeting; do
      python tools/make_raw_list.py --segments "data/$x/segments" \
        "data/$x/wav.scp" "data/$x/text" "data/$x/data.list"
    done
  fi
  # the shared stages train on data/train; its units, CMVN and shards belong to one subset
  if [ -e data/train ] && [ "$(readlink data/train)" != "$train_set" ]; then
    echo "data/train is $(readlink data/train || echo 'a directory'), not $train_set: the" \
      "units, CMVN and shards of stages 1-3 belong to it. Use a new recipe directory for" \
      "--train_subset $train_subset (or remove data/train, data/dict and data/dev/shards*)." >&2
    exit 1
  fi
  ln -sfn "$train_set" data/train
  echo "  wrote data/{$train_set,dev,test_net,test_meeting}/{wav.scp,segments,text," \
    "utt2dur,data.list}, data/train -> $train_set"
fi

. tools/recipe_stages.sh
