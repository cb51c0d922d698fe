# shellcheck shell=bash
# shellcheck disable=SC2154  # options: set in tools/recipe_defaults.sh, checked in recipe_stages.sh
# Stage helpers shared by the recipes (recipes/<corpus>/s0/run.sh). Source it after
# tools/parse_options.sh; the functions read the options of tools/recipe_defaults.sh (which
# tools/recipe_stages.sh checks are set), the variables recipe_stages.sh derives from them
# (dict bpe_prefix tokenizer_opts list_name init_checkpoint) and MAIN_ROOT (path.sh).

# True when stage $1 is in [stage, stop_stage]; then prints its line of the stage tables
# (shared_stages of tools/recipe_defaults.sh, corpus_stages of run.sh). On the nodes other than
# node 0 of a multi-node run only the training stages ($train_stages) run: the others write
# shared files.
run_stage() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  [ "$node_rank" -eq 0 ] || [[ " $train_stages " == *" $1 "* ]] || return 1
  { shared_stages; corpus_stages; } | awk -v n="$1" '$1 == n { $1 = "stage " n ":"; print }'
}

# True when the stage must (re)make $1: it is missing or --force true; else says it is kept.
needs() {
  if [ "$force" = true ] || [ ! -e "$1" ]; then return 0; fi
  echo "  $1 exists, kept (--force true redoes it)"
  return 1
}

# The training launcher: python for one process; torchrun for several processes or GPUs on
# one node (--standalone) or on $num_nodes nodes (c10d rendezvous at $master_addr:$master_port;
# run the same command on every node with its --node_rank).
launcher() {
  local procs=$nproc
  [ "$num_gpus" -gt 0 ] && procs=$num_gpus
  if [ "$num_nodes" -gt 1 ]; then
    echo "torchrun --nnodes=$num_nodes --node_rank=$node_rank --nproc_per_node=$procs" \
      "--rdzv_id=$rdzv_id --rdzv_backend=c10d" \
      "--rdzv_endpoint=$master_addr:$master_port"
  elif [ "$procs" -gt 1 ] || [ "$train_engine" = deepspeed ]; then
    # on CPU, one thread per process: small matrices scale better over processes than threads
    if [ "$num_gpus" -eq 0 ]; then printf "env OMP_NUM_THREADS=1 "; fi
    echo "torchrun --standalone --nnodes=1 --nproc_per_node=$procs"
  else
    echo python
  fi
}

# Train into $1 with extra Hydra overrides $2 (the recipe's data, tokenizer and engine options),
# on the data lists $3 and $4 (default: data/train and data/dev).
train_model() {
  local exp=$1 extra_opts=$2 engine_opts=""
  local train_list=${3:-data/train/$list_name} cv_list=${4:-data/dev/$list_name}
  mkdir -p "$exp"
  if [ "$train_engine" = deepspeed ]; then
    engine_opts="train.train_engine=deepspeed train.deepspeed_config=$deepspeed_config"
  fi
  # shellcheck disable=SC2046,SC2086  # the launcher and the option strings are word lists
  $(launcher) -m wenet_eff.bin.train --config-dir "$(cd "$(dirname "$train_config")" && pwd)" \
    --config-name "$(basename "$train_config" .yaml)" model="$model" \
    data.train_data="$train_list" data.cv_data="$cv_list" \
    data.data_type="$data_type" $tokenizer_opts cmvn.file=data/train/global_cmvn \
    train.exp_dir="$exp" train.max_epoch="$max_epoch" \
    $engine_opts $train_opts $extra_opts
}

# Fine-tune $init_checkpoint into $1 for $2 updates at peak lr $3 (warmup $4, cosine to 0),
# extra overrides $5, data lists $6 and $7 (default: data/train and data/dev).
finetune() {
  train_model "$1" "train.init_checkpoint=$init_checkpoint train.max_steps=$2 optim.lr=$3 \
    optim.warmup_steps=$4 optim.scheduler=cosine ${5:-}" "${6:-}" "${7:-}"
}

# Fine-tune $init_checkpoint once per compress config in the list $1, into ${dir}_<config>
# ($2 updates at peak lr $3, warmup $4); a run whose final.pt exists is kept.
finetune_each() {
  local config
  for config in $1; do
    if needs "${dir}_$config/final.pt"; then
      finetune "${dir}_$config" "$2" "$3" "$4" "compress=$config"
    fi
  done
}

# The compression that the training config $1 enables: "quant", "sparsity", both or nothing.
compress_kinds() {
  if [ ! -f "$1" ]; then
    echo "$1 is missing: run stage 10 (compression fine-tuning) for this config first" >&2
    return 1
  fi
  python -c 'import sys, yaml
compress = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))["compress"]
print(" ".join(kind for kind in ("quant", "sparsity") if compress[kind]["enabled"]))' "$1"
}

# Stage 11 for the compression run $1 (${dir}_<config>) with the compression $2
# (compress_kinds): average $ft_average_num checkpoints; fold the masks of a sparse run
# (bin.masks checks N:M); pack a quantized run (its real storage); decode the folded or packed
# model (the averaged one of a float control) on $compress_test_sets with $compress_modes.
compress_decode() {
  local exp=$1 kinds=$2 checkpoint extra="" test_set
  average "$exp" "$ft_average_num"
  checkpoint=$exp/avg_${ft_average_num}.pt
  if [[ " $kinds " == *" sparsity "* ]]; then
    if needs "$exp/folded.pt"; then
      python -m wenet_eff.bin.masks fold --config "$exp/train.yaml" --checkpoint "$checkpoint" \
        --out "$exp/folded.pt"
    fi
    extra="--config $exp/folded.yaml"
  fi
  if [[ " $kinds " == *" quant "* ]]; then  # sparse + quantized: N:M storage in the packed file
    if needs "$exp/packed.pt"; then
      python -m wenet_eff.bin.pack --config "$exp/train.yaml" --checkpoint "$checkpoint" \
        --out "$exp/packed.pt"
    fi
    checkpoint=$exp/packed.pt extra=""
  elif [ -n "$extra" ]; then
    checkpoint=$exp/folded.pt
  fi
  for test_set in $compress_test_sets; do
    decode_and_score "$checkpoint" "$test_set" "$exp/$test_set" "$compress_modes" -1 "$extra"
  done
}

# Stage 11 for the compression run $1 (a quantized one, or the float control): export it to
# the C++ runtime as it was trained, into $1/runtime (a QAT run from its packed.pt: the integer
# codes, scales and zero points QAT learned, at their bit width; .pt2 graphs of the kernel
# paths --compress_runtime_precisions, default fp32 + int8, the runtime picking one per CPU;
# full context only), then decode the test set $2 with decoder_main into
# $1/runtime/$2/chunk-1/{text,wer,rtf.json} (compress_table.py reads them).
compress_runtime() {
  local exp=$1 test_set=$2 out=$1/runtime checkpoint=$1/avg_${ft_average_num}.pt
  local decoder_main=$MAIN_ROOT/runtime/build/decoder_main precisions=()
  [ -f "$exp/packed.pt" ] && checkpoint=$exp/packed.pt
  [ -x "$decoder_main" ] || PYTHON="$(command -v python)" "$MAIN_ROOT/runtime/build.sh"
  if needs "$out/meta.json"; then
    # shellcheck disable=SC2206  # a list of precisions
    [ -n "$compress_runtime_precisions" ] && precisions=(--precisions $compress_runtime_precisions)
    python -m wenet_eff.bin.export --config "$exp/train.yaml" --checkpoint "$checkpoint" \
      --out_dir "$out" --chunk_size -1 --formats pt2 --jobs "$(( nj < 2 ? nj : 2 ))" \
      "${precisions[@]}"
  fi
  runtime_wav_list "$test_set"
  runtime_decode_one "$decoder_main" "$out" "$test_set" -1 "$out/$test_set/chunk-1" \
    --beam_size "$beam_size"
}

# Decode data/$2 with checkpoint $1 into $3/<mode>/ for the modes $4, chunk size $5, and score;
# $6: extra recognize options (e.g. "--config x.yaml", "--masks m.pt").
decode_and_score() {
  local checkpoint=$1 test_set=$2 result_dir=$3 modes=$4 chunk=$5 extra=${6:-} decoded=true mode
  for mode in $modes; do [ -f "$result_dir/$mode/text" ] || decoded=false; done
  if [ "$decoded" = false ] || [ "$force" = true ]; then
    # shellcheck disable=SC2086  # modes and extra are lists
    python -m wenet_eff.bin.recognize --config "$(dirname "$checkpoint")/train.yaml" \
      --checkpoint "$checkpoint" --test_data "data/$test_set/data.list" --data_type raw \
      --modes $modes --result_dir "$result_dir" --beam_size "$beam_size" \
      --batch_size "$decode_batch_size" --ctc_weight "$ctc_weight" \
      --reverse_weight "$reverse_weight" --decoding_chunk_size "$chunk" \
      --num_decoding_left_chunks "$num_decoding_left_chunks" $extra
  fi
  for mode in $modes; do
    python tools/compute_wer.py --char="$wer_char" --v=1 "data/$test_set/text" \
      "$result_dir/$mode/text" > "$result_dir/$mode/wer"
    echo "$result_dir/$mode/wer: $(grep '^Overall' "$result_dir/$mode/wer")"
  done
}

# Stage 2: the units $dict of the training text (characters, or a sentencepiece BPE model
# $bpe_prefix of $nbpe pieces when token_type=bpe), then the word LM.
make_dict() {
  if needs "$dict"; then
    if [ "$token_type" = bpe ]; then
      python tools/make_units.py --token_type bpe --nbpe "$nbpe" --normalize "$normalize" \
        --bpe_model_prefix "$bpe_prefix" data/train/text "$dict"
    else
      python tools/make_units.py --token_type char --normalize "$normalize" \
        data/train/text "$dict"
    fi
  fi
  build_lm
}

# Stage 3: shards of data/{train,dev} (wav.scp, text and, where there is one, segments: the
# utterances of data.list) when data_type=shard.
make_shards() {
  local x segments
  [ "$data_type" = shard ] || return 0
  for x in train dev; do
    if needs "data/$x/shards.list"; then
      segments=""
      [ -f "data/$x/segments" ] && segments="--segments data/$x/segments"
      # shellcheck disable=SC2086  # segments is empty or one option
      python tools/make_shard_list.py --num_utts_per_shard "$num_utts_per_shard" \
        --num_threads "$nj" $segments "data/$x/wav.scp" "data/$x/text" "data/$x/shards" \
        "data/$x/shards.list"
    fi
  done
}

# The word LM: $lm_path (an ARPA file from elsewhere) or, when lm_order > 0, an n-gram LM of the
# training transcripts that build_lm (stage 2) writes; neither: decoding without an LM.
use_lm() { [ -n "$lm_path" ] || [ "$lm_order" -gt 0 ]; }
lm_arpa() { echo "${lm_path:-data/lm/${lm_order}gram.arpa}"; }
build_lm() {
  if [ -n "$lm_path" ] || [ "$lm_order" -le 0 ]; then return 0; fi
  if needs "$(lm_arpa)"; then
    python -m wenet_eff.bin.train_lm --text data/train/text --order "$lm_order" \
      --normalize "$normalize" --arpa "$(lm_arpa)" --dev_text data/dev/text
  fi
}

# Stage 5: average the best checkpoints of $1, decode the test sets $test_sets with
# $decode_modes into $1/<test_set>/<mode>/ and, with an LM, with $lm_modes and the LM fused
# into $1/<test_set>/lm/<mode>/ (beam $lm_beam_size: the LM reorders more of the beam); one WER
# table of them all.
decode_test_sets() {
  local exp=$1 modes=$decode_modes test_set mode
  average "$exp"
  for test_set in $test_sets; do
    decode_and_score "$exp/avg_${average_num}.pt" "$test_set" "$exp/$test_set" "$decode_modes" -1
    if use_lm; then
      decode_and_score "$exp/avg_${average_num}.pt" "$test_set" "$exp/$test_set/lm" "$lm_modes" \
        -1 "--lm $(lm_arpa) --lm_weight $lm_weight --word_bonus $word_bonus \
        --beam_size $lm_beam_size ${lm_min_token_logp:+--min_token_logp $lm_min_token_logp}"
    fi
  done
  if use_lm; then
    for mode in $lm_modes; do modes="$modes lm/$mode"; done
  fi
  python tools/wer_table.py --test_sets "$test_sets" --modes "$modes" "$exp"
}

# Average the $2 (default $average_num) best checkpoints of $1 (by cv loss) into $1/avg_N.pt.
average() {
  local num=${2:-$average_num}
  if needs "$1/avg_${num}.pt"; then
    python -m wenet_eff.bin.average_model --dst_model "$1/avg_${num}.pt" --src_path "$1" \
      --num "$num" --val_best
  fi
}

# Decode checkpoint $1 on the test sets $2 at each chunk size of $decoding_chunks into
# <its dir>/<test_set>/{chunkN,full}/<mode>/ for the modes $3; one WER table of them all.
decode_chunks() {
  local checkpoint=$1 test_sets=$2 modes=$3 exp test_set chunk name columns=""
  exp=$(dirname "$checkpoint")
  for test_set in $test_sets; do
    for chunk in $decoding_chunks; do
      name=chunk$chunk
      [ "$chunk" -lt 0 ] && name=full
      decode_and_score "$checkpoint" "$test_set" "$exp/$test_set/$name" "$modes" "$chunk"
      columns="$columns $test_set/$name"
    done
  done
  python tools/wer_table.py --test_sets "$columns" --modes "$modes" "$exp"
}

# Tables and plots (python -m wenet_eff.bin.tables) of every exp/* with a train.yaml into
# exp/tables: WER columns $1, plus the benchmark JSON files in the list $2.
experiment_tables() {
  local test_sets=$1 d json exps=() bench=()
  for d in exp/*/; do [ -f "$d/train.yaml" ] && exps+=("${d%/}"); done
  if [ "${#exps[@]}" -eq 0 ]; then
    echo "tables: no exp/*/train.yaml yet (run the training stage first)" >&2
    return 1
  fi
  for json in ${2:-}; do bench+=(--bench "$json"); done
  # the directories first: --test_sets and --bench take the words after them; the run's JSON
  # is kept in results/ (with its provenance) and RESULTS.md is rewritten from all of it
  python -m wenet_eff.bin.tables "${exps[@]}" --out_dir exp/tables --test_sets "$test_sets" \
    "${bench[@]}" --results_dir results
}

# The precisions of $runtime_precisions this machine serves at speed: int8 needs int8
# dot-product instructions (wenet_eff.export.int8.fast_int8_matmul) unless
# --runtime_int8 always (the int8 graphs are correct everywhere, only slow without them).
runtime_precisions_here() {
  local precision
  for precision in $runtime_precisions; do
    if [ "$precision" = int8 ] && [ "$runtime_int8" = auto ] && ! python -c \
      "import sys; from wenet_eff.export.int8 import fast_int8_matmul as f; sys.exit(not f())"; then
      echo "  int8 skipped: this CPU has no int8 dot-product instructions (AVX-512 VNNI," \
        "AVX-VNNI, AMX), where int8 GEMMs are slower than fp32 (--runtime_int8 always runs it)" >&2
      continue
    fi
    echo "$precision"
  done
}

# Export $1/avg_$average_num.pt to the C++ runtime, one directory $1/runtime_<precision> per
# precision in $runtime_precisions, in the formats $runtime_formats (AOTInductor .pt2, which
# decoder_main runs, and ONNX; checked against PyTorch), the graphs $runtime_pieces (default:
# all, the server's batched step encoder_chunk_batch included). Up to 3 pieces compile at once
# ($nj caps it; each process holds a copy of the model).
export_runtime() {
  local exp=$1 precision out pieces=()
  # shellcheck disable=SC2206  # a list of graph names
  [ -n "$runtime_pieces" ] && pieces=(--pieces $runtime_pieces)
  case " $runtime_formats " in
    *" pt2 "*) ;;
    *) echo "export_runtime: --runtime_formats '$runtime_formats' lacks pt2, which decoder_main" \
      "runs (stage 7)" >&2
      return 1 ;;
  esac
  for precision in $(runtime_precisions_here); do
    out=$exp/runtime_$precision
    if needs "$out/meta.json"; then
      # shellcheck disable=SC2086  # the formats are a list
      python -m wenet_eff.bin.export --config "$exp/train.yaml" \
        --checkpoint "$exp/avg_${average_num}.pt" --out_dir "$out" \
        --chunk_size "$runtime_chunk_size" --num_left_chunks "$runtime_left_chunks" \
        --precisions "$precision" --formats $runtime_formats --jobs "$(( nj < 3 ? nj : 3 ))" \
        "${pieces[@]}" --check
    fi
  done
}

# Decode the test sets $2 with decoder_main (C++) from each $1/runtime_<precision>, at the chunk
# sizes $runtime_chunks, without and (use_lm) with the word LM fused as in stage 5 (into
# <test_set>/lm/chunk<N>); score; collect $1/runtime_table.{md,json}, full context beside
# Python's stage-5 results. decoder_main reads WAV files: test sets in other formats (FLAC,
# Opus) or with segments are first written as 16 kHz WAV files under data/<test_set>/runtime_wav
# (once).
runtime_decode() {
  local exp=$1 test_sets=$2 decoder_main=$MAIN_ROOT/runtime/build/decoder_main
  local runtime_dirs="" precision out test_set chunk lm_opts=()
  [ -x "$decoder_main" ] || PYTHON="$(command -v python)" "$MAIN_ROOT/runtime/build.sh"
  for test_set in $test_sets; do runtime_wav_list "$test_set"; done
  # with the LM: the settings of stage 5's <test_set>/lm/attention_rescoring, fused in C++
  if use_lm; then
    lm_opts=(--beam_size "$lm_beam_size" --lm "$(lm_arpa)" --lm_weight "$lm_weight"
      --word_bonus "$word_bonus")
    if [ -n "$lm_min_token_logp" ]; then lm_opts+=(--min_token_logp "$lm_min_token_logp"); fi
  fi
  for precision in $(runtime_precisions_here 2> /dev/null); do
    out=$exp/runtime_$precision
    runtime_dirs="$runtime_dirs $out"
    for test_set in $test_sets; do
      for chunk in $runtime_chunks; do
        runtime_decode_one "$decoder_main" "$out" "$test_set" "$chunk" "$out/$test_set/chunk$chunk" \
          --beam_size "$beam_size"
        if use_lm; then
          runtime_decode_one "$decoder_main" "$out" "$test_set" "$chunk" \
            "$out/$test_set/lm/chunk$chunk" "${lm_opts[@]}"
        fi
      done
    done
  done
  # shellcheck disable=SC2086  # runtime_dirs is a list
  python tools/runtime_table.py --test_sets "$test_sets" --chunks "$runtime_chunks" \
    --python_dir "$exp" --out "$exp/runtime_table" $runtime_dirs
}

# data/$1/runtime_wav.list: the test set as 16 kHz WAV files, which decoder_main reads (once)
runtime_wav_list() {
  if needs "data/$1/runtime_wav.list"; then
    python tools/make_wav_list.py --num_threads "$nj" "data/$1/data.list" "data/$1/runtime_wav" \
      "data/$1/runtime_wav.list"
  fi
}

# decoder_main on data/$3's WAV copies with chunk $4 into result dir $5 (text, log, rtf.json,
# wer); the rest are its search options ($2: the runtime dir, $1: the binary)
runtime_decode_one() {
  local decoder_main=$1 out=$2 test_set=$3 chunk=$4 result=$5
  shift 5
  mkdir -p "$result"
  if needs "$result/rtf.json"; then
    # rtf.json is written only when utterances were decoded; on failure, say why
    "$decoder_main" --model_dir "$out" --data_list "data/$test_set/runtime_wav.list" \
      --chunk_size "$chunk" --mode attention_rescoring "$@" \
      --ctc_weight "$ctc_weight" --reverse_weight "$reverse_weight" \
      --threads "$runtime_threads" --warmup 2 --result "$result/text" \
      --rtf_json "$result/rtf.json" 2> "$result/log" \
      || { tail -n 20 "$result/log" >&2; rm -f "$result/rtf.json"; return 1; }
    tail -1 "$result/log"
  fi
  python tools/compute_wer.py --char="$wer_char" --v=1 "data/$test_set/text" \
    "$result/text" > "$result/wer"
}
