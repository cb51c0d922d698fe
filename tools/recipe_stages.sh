# Stages 1-13 shared by the corpus recipes (librispeech, aishell, wenetspeech): sourced by their
# run.sh after stage 0 (data prep into data/train, data/dev and data/<test_set>) with the
# options of tools/recipe_lib.sh set, plus token_type, nbpe, test_sets, decode_modes,
# streaming_dir, decoding_chunks, qat_configs, sparse_configs, compress_steps, compress_lr,
# compress_warmup, compress_modes, ft_steps, ft_lr, ft_warmup, nj, num_utts_per_shard, normalize (english | chinese | none: text normalisation of the units and
# the tokenizer) and wer_char (1: score characters, for Chinese).
#
#   1 global CMVN   2 units (char or sentencepiece BPE), word LM   3 shards   4 training
#   5 average + decode + WER table   6 export to the runtime   7 C++ runtime WER + RTF
#   8 streaming fine-tuning   9 decode per chunk size   10 QAT + sparse fine-tuning
#   11 pack + decode QAT models   12 fold + decode sparse models   13 tables + plots

[ -n "$runtime_chunks" ] || runtime_chunks="-1 $runtime_chunk_size"
if [ "$token_type" = bpe ]; then
  dict=data/dict/units_bpe${nbpe}.txt
  bpe_prefix=data/dict/bpe${nbpe}
  tokenizer_opts="tokenizer.type=bpe tokenizer.units=$dict tokenizer.bpe_model=$bpe_prefix.model"
else
  dict=data/dict/units.txt
  bpe_prefix=""
  tokenizer_opts="tokenizer.type=char tokenizer.units=$dict"
fi
tokenizer_opts="$tokenizer_opts tokenizer.normalize=$normalize"
if [ "$data_type" = shard ]; then list_name=shards.list; else list_name=data.list; fi
streaming_dir=${streaming_dir:-${dir}_streaming}
init_checkpoint=${init_checkpoint:-$dir/avg_${average_num}.pt}

if run_stage 1; then
  echo "stage 1: global CMVN of train"
  if needs data/train/global_cmvn; then
    python tools/compute_cmvn_stats.py --num_workers "$nj" \
      --in_data_list data/train/data.list --out_cmvn data/train/global_cmvn
  fi
fi

if run_stage 2; then
  echo "stage 2: dictionary ($token_type${bpe_prefix:+, $nbpe pieces})"
  make_dict
fi

if run_stage 3; then
  echo "stage 3: training lists (data_type=$data_type)"
  make_shards
fi

if run_stage 4; then
  echo "stage 4: training $dir ($model, $train_engine, nodes=$num_nodes, gpus=$num_gpus)"
  if needs "$dir/final.pt"; then
    train_model "$dir" ""
  fi
  if [ "$node_rank" -eq 0 ]; then python tools/plot_training.py "$dir"; fi
fi

if run_stage 5; then
  echo "stage 5: average $average_num checkpoints, decode $test_sets, score"
  decode_test_sets "$dir"
fi

if run_stage 6; then
  echo "stage 6: export $dir/avg_${average_num}.pt to the C++ runtime ($runtime_precisions)"
  export_runtime "$dir"
fi

if run_stage 7; then
  echo "stage 7: C++ runtime on $test_sets, chunk sizes $runtime_chunks"
  runtime_decode "$dir" "$test_sets"
fi

if run_stage 8; then
  echo "stage 8: streaming fine-tuning of $init_checkpoint into $streaming_dir"
  if needs "$streaming_dir/final.pt"; then
    finetune "$streaming_dir" "$ft_steps" "$ft_lr" "$ft_warmup" train=streaming_finetune
  fi
fi

if run_stage 9; then
  echo "stage 9: decode $streaming_dir at chunk sizes $decoding_chunks"
  average "$streaming_dir" "$ft_average_num"
  decode_chunks "$streaming_dir/avg_${ft_average_num}.pt" "$test_sets" "$decode_modes"
fi

if run_stage 10; then
  echo "stage 10: QAT and sparse fine-tuning of $init_checkpoint: $qat_configs $sparse_configs"
  finetune_each "$qat_configs $sparse_configs" "$compress_steps" "$compress_lr" "$compress_warmup"
fi

if run_stage 11; then
  echo "stage 11: pack the QAT models, decode the packed files"
  for config in $qat_configs; do
    exp=${dir}_$config
    average "$exp" "$ft_average_num"
    if needs "$exp/packed.pt"; then
      python -m wenet_eff.bin.pack --config "$exp/train.yaml" \
        --checkpoint "$exp/avg_${ft_average_num}.pt" --out "$exp/packed.pt"
    fi
    for test_set in $test_sets; do
      decode_and_score "$exp/packed.pt" "$test_set" "$exp/$test_set" "$compress_modes" -1
    done
  done
fi

if run_stage 12; then
  echo "stage 12: fold the sparse masks (N:M checked), decode the folded models"
  for config in $sparse_configs; do
    exp=${dir}_$config
    average "$exp" "$ft_average_num"
    if needs "$exp/folded.pt"; then
      python -m wenet_eff.bin.masks fold --config "$exp/train.yaml" \
        --checkpoint "$exp/avg_${ft_average_num}.pt" --out "$exp/folded.pt"
    fi
    for test_set in $test_sets; do
      decode_and_score "$exp/folded.pt" "$test_set" "$exp/$test_set" "$compress_modes" -1 \
        "--config $exp/folded.yaml"
    done
  done
fi

if run_stage 13; then
  echo "stage 13: tables and plots (params, size, RTF, WER) of the experiments under exp/"
  experiment_tables "$test_sets"
fi
