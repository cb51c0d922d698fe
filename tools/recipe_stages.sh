# shellcheck shell=bash
# Stages 1-12 of every recipe (the table: shared_stages in tools/recipe_defaults.sh). run.sh
# sources it after its stage 0 (data prep into data/train, data/dev and data/<test_set>), with
# tools/recipe_defaults.sh, tools/parse_options.sh and tools/recipe_lib.sh sourced before. It
# reads these options of recipe_defaults.sh (a missing one stops here, named) and MAIN_ROOT.
: "${MAIN_ROOT:?}" "${stage:?}" "${stop_stage:?}" "${force:?}" "${nj:?}" "${test_sets:?}"
: "${data_type:?}" "${num_utts_per_shard:?}" "${token_type:?}" "${nbpe:?}" "${normalize:?}"
: "${wer_char:?}" "${model:?}" "${dir:?}" "${train_config:?}" "${train_opts?}" "${max_epoch:?}"
: "${num_nodes:?}" "${node_rank:?}" "${master_addr:?}" "${master_port:?}" "${rdzv_id:?}"
: "${train_stages:?}" "${num_gpus:?}" "${nproc:?}" "${train_engine:?}" "${deepspeed_config:?}"
: "${average_num:?}" "${decode_modes:?}" "${beam_size:?}" "${decode_batch_size:?}"
: "${ctc_weight:?}" "${reverse_weight:?}" "${num_decoding_left_chunks:?}"
: "${lm_order:?}" "${lm_path?}" "${lm_weight:?}" "${word_bonus:?}" "${lm_beam_size:?}"
: "${lm_min_token_logp?}" "${lm_modes:?}" "${init_checkpoint?}" "${streaming_dir?}"
: "${ft_steps:?}" "${ft_lr:?}" "${ft_warmup:?}" "${ft_average_num:?}" "${decoding_chunks:?}"
: "${streaming_test_sets?}" "${streaming_modes:?}" "${compress_configs?}" "${compress_steps:?}"
: "${compress_lr:?}" "${compress_warmup:?}" "${compress_test_sets?}" "${compress_modes:?}"
: "${compress_runtime_precisions?}"
: "${runtime_precisions:?}" "${runtime_int8:?}" "${runtime_formats:?}" "${runtime_pieces?}"
: "${runtime_chunk_size:?}"
: "${runtime_left_chunks:?}" "${runtime_chunks?}" "${runtime_threads:?}" "${tables_bench?}"

# Derived from the options (recipe_lib.sh and the recipe's own later stages read these too)
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
init_checkpoint=${init_checkpoint:-$dir/avg_${average_num}.pt}
streaming_dir=${streaming_dir:-${dir}_streaming}
streaming_test_sets=${streaming_test_sets:-$test_sets}
compress_test_sets=${compress_test_sets:-$test_sets}
runtime_chunks=${runtime_chunks:-"-1 $runtime_chunk_size"}

if run_stage 1; then
  if needs data/train/global_cmvn; then
    # the features of $train_config's data settings; data.list: segments are cut out
    python tools/compute_cmvn_stats.py --num_workers "$nj" --train_config "$train_config" \
      --in_data_list data/train/data.list --out_cmvn data/train/global_cmvn
  fi
  echo "  wrote data/train/global_cmvn"
fi

if run_stage 2; then
  echo "  $token_type${bpe_prefix:+, $nbpe pieces}"
  make_dict
  echo "  wrote $dict${bpe_prefix:+, $bpe_prefix.model} (and the LM when --lm_order > 0)"
fi

if run_stage 3; then
  echo "  data_type=$data_type: training on data/{train,dev}/$list_name"
  make_shards
fi

if run_stage 4; then
  echo "  $dir: $model ($train_config), $train_engine, nodes=$num_nodes, gpus=$num_gpus," \
    "cpu processes=$nproc"
  if needs "$dir/final.pt"; then
    train_model "$dir" ""
  fi
  if [ "$node_rank" -eq 0 ]; then python tools/plot_training.py "$dir"; fi
  echo "  wrote $dir/{train.yaml,N.pt,N.yaml,final.pt,training_curves.png}"
fi

if run_stage 5; then
  decode_test_sets "$dir"
  echo "  wrote $dir/avg_${average_num}.pt, $dir/<test_set>/[lm/]<mode>/{text,wer}," \
    "$dir/wer_table.{md,json}"
fi

if run_stage 6; then
  export_runtime "$dir"
  echo "  wrote $dir/runtime_<precision>/ (--runtime_precisions $runtime_precisions)"
fi

if run_stage 7; then
  echo "  chunk sizes $runtime_chunks"
  runtime_decode "$dir" "$test_sets"
  echo "  wrote $dir/runtime_<precision>/<test_set>/chunk<N>/{text,wer,rtf.json}," \
    "$dir/runtime_table.{md,json}"
fi

if run_stage 8; then
  if needs "$streaming_dir/final.pt"; then
    finetune "$streaming_dir" "$ft_steps" "$ft_lr" "$ft_warmup" train=streaming_finetune
  fi
  if [ "$node_rank" -eq 0 ]; then python tools/plot_training.py "$streaming_dir"; fi
  echo "  wrote $streaming_dir/{train.yaml,N.pt,final.pt,training_curves.png}"
fi

if run_stage 9; then
  average "$streaming_dir" "$ft_average_num"
  decode_chunks "$streaming_dir/avg_${ft_average_num}.pt" "$streaming_test_sets" "$streaming_modes"
  echo "  wrote $streaming_dir/<test_set>/{chunkN,full}/<mode>/{text,wer}," \
    "$streaming_dir/wer_table.{md,json}"
fi

if run_stage 10; then
  echo "  ${dir}_<config> for $compress_configs"
  finetune_each "$compress_configs" "$compress_steps" "$compress_lr" "$compress_warmup"
  echo "  wrote ${dir}_<config>/{train.yaml,N.pt,final.pt}"
fi

if run_stage 11; then
  read -r table_set _ <<< "$compress_test_sets"
  float_dir=$dir  # the WER the tables compare against: the float control run when there is one
  [ -d "${dir}_none/$table_set" ] && float_dir=${dir}_none
  quant_dirs=()
  sparse_dirs=()
  for config in $compress_configs; do
    exp=${dir}_$config
    kinds=$(compress_kinds "$exp/train.yaml")
    compress_decode "$exp" "$kinds"
    # sparse runs in the sparsity table; quantized ones (int4_sparse_2_4: both) in the QAT table
    [[ " $kinds " == *" sparsity "* ]] && sparse_dirs+=("$exp")
    [[ " $kinds " == *" quant "* ]] && quant_dirs+=("$exp")
    [[ " $kinds " == *" sparsity "* || " $kinds " == *" quant "* ]] || float_dir=$exp
    # the QAT runs and the float control in the C++ runtime, as trained (packed; N:M codes as
    # values and positions)
    if [[ " $kinds " == *" quant "* || " $kinds " != *" sparsity "* ]]; then
      compress_runtime "$exp" "$table_set"
    fi
  done
  mkdir -p "$dir"  # holds the tables also when --init_checkpoint came from elsewhere
  if [ "${#quant_dirs[@]}" -gt 0 ]; then
    python tools/compress_table.py --float_dir "$float_dir" --test_set "$table_set" \
      --modes "$compress_modes" "${quant_dirs[@]}" > "$dir/compress_table.md"
    cat "$dir/compress_table.md"
  fi
  if [ "${#sparse_dirs[@]}" -gt 0 ]; then
    python tools/sparse_table.py --float_dir "$float_dir" --test_set "$table_set" \
      --modes "$compress_modes" --json "$dir/sparse_table.json" "${sparse_dirs[@]}" \
      > "$dir/sparse_table.md"
    cat "$dir/sparse_table.md"
  fi
  echo "  wrote ${dir}_<config>/{packed.pt,folded.pt,<test_set>/,runtime/}, $dir/compress_table.md" \
    "($float_dir/compress_table.json, compress_wer_vs_size.png), $dir/sparse_table.{md,json}"
fi

if run_stage 12; then
  experiment_tables "$test_sets" "$tables_bench"
  echo "  wrote exp/tables/{tables.md,tables.json,wer_vs_rtf.png,wer_vs_size.png}"
fi
