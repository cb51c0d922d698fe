# shellcheck shell=bash
# shellcheck disable=SC2034  # the options are read by run.sh, recipe_lib.sh and recipe_stages.sh
# The stage table and the options of every recipe. run.sh sources it after path.sh, then sets
# its own options and the defaults it changes, then sources tools/parse_options.sh: every
# `name=value` line below is an option (--name value), and run.sh --help lists them.
#
# Stages are numbered once for all recipes: shared_stages (run by tools/recipe_stages.sh, stage 0
# by run.sh) and a recipe's own stages (corpus_stages in its run.sh) at numbers no shared stage
# uses: below 0 for data created before stage 0, 20 and above for experiments of that corpus.

shared_stages() {
  cat << 'EOF'
   0  data preparation into data/{train,dev,<test_set>}/{wav.scp,text,data.list} (run.sh's own)
   1  global CMVN of data/train
   2  units (characters or sentencepiece BPE) and the word n-gram LM of the training text
   3  training lists (shards when --data_type shard)
   4  training of --dir
   5  average checkpoints, decode --test_sets (and with the LM), score, WER table
   6  export the averaged model to the C++ runtime (--runtime_formats, --runtime_precisions)
   7  C++ runtime (decoder_main) on --test_sets per chunk size: WER and RTF
   8  streaming fine-tuning of --init_checkpoint into --streaming_dir
   9  decode --streaming_dir per chunk size (--decoding_chunks), WER table
  10  compression fine-tuning of --init_checkpoint, one run per --compress_configs
  11  pack (QAT) or fold (sparse) each run, decode it (QAT: also packed in C++), size/sparsity x WER
  12  tables and plots of every exp/*/ (python -m wenet_eff.bin.tables)
EOF
}

stage=0
stop_stage=7
force=false             # true: redo the outputs that exist (every stage keeps them otherwise)
nj=8                    # parallel processes for data prep, CMVN, shards and export
test_sets="test"        # data/<test_set> dirs decoded in stages 5, 7, 9 and 11
data_type=shard         # raw | shard
num_utts_per_shard=1000
token_type=char         # char | bpe
nbpe=5000
normalize=english       # text normalisation of units and tokenizer: english | chinese | none
wer_char=0              # 1: CJK scored per character (CER), other words whole (compute_wer)
model=u2pp_conformer    # packaged model config (paper_dense_225m, paper_moe_1b, paper_dense_1b...)
dir=exp/u2pp_conformer
train_config=conf/train_u2pp_conformer.yaml
train_opts=""           # extra Hydra overrides, e.g. "optim.lr=0.002 model/ffn=moe"
max_epoch=120
num_nodes=1             # > 1: torchrun with c10d rendezvous at $master_addr:$master_port
node_rank=0
master_addr=localhost
master_port=29400
rdzv_id=wenet_eff
train_stages="4 8 10"   # the stages that run on every node (the others only on node 0)
num_gpus=0              # > 0: one process per GPU (NCCL); 0: CPU processes (gloo)
nproc=1                 # CPU processes when num_gpus=0 (also the parallel runs of an lr sweep)
train_engine=torch_ddp  # torch_ddp | deepspeed
deepspeed_config=conf/ds_stage2.json
average_num=30
decode_modes="ctc_greedy_search ctc_prefix_beam_search attention attention_rescoring"
beam_size=10
decode_batch_size=16
ctc_weight=0.3
reverse_weight=0.5
num_decoding_left_chunks=-1
lm_order=0              # > 0: an n-gram LM of the training text (stage 2), fused in stage 5
lm_path=""              # or an ARPA file from elsewhere (e.g. LibriSpeech's 3-gram)
lm_weight=0.5
word_bonus=1.0
lm_beam_size=20         # the beam of the LM decoding (the LM reorders more of the beam)
lm_min_token_logp=""    # e.g. -9.2: prefix search expands only tokens with p >= 1e-4 per frame
lm_modes="ctc_prefix_beam_search attention_rescoring"
init_checkpoint=""      # the start of stages 8 and 10 (default: $dir/avg_$average_num.pt)
streaming_dir=""        # default: ${dir}_streaming
ft_steps=20000          # updates of the streaming fine-tuning (cosine schedule to 0)
ft_lr=0.0005
ft_warmup=2000
ft_average_num=5        # checkpoints averaged after fine-tuning (stages 9, 11)
decoding_chunks="16 -1" # encoder frames per chunk (40 ms each); -1: full context
streaming_test_sets=""  # default: $test_sets
streaming_modes="ctc_greedy_search ctc_prefix_beam_search attention_rescoring"
# stage 10 runs: wenet_eff/conf/compress/<name>.yaml; none: the float control (no compression)
compress_configs="qat_int4 qat_int2_subchannel sparse_2_4_step"
compress_steps=20000    # updates of each compression fine-tuning
compress_lr=0.0005
compress_warmup=1000
compress_test_sets=""   # default: $test_sets (the tables use the first)
compress_modes="ctc_greedy_search attention_rescoring"
compress_runtime_precisions=""  # stage 11's C++ export; default: fp32 int8 (a float run: fp32)
runtime_precisions="fp32 int8"
runtime_int8=auto       # auto: int8 only on CPUs with int8 dot products | always
runtime_formats="pt2 onnx"  # pt2 for decoder_main (needed by stage 7), onnx for onnxruntime
runtime_pieces=""       # graphs to export (bin.export --pieces); default: all, incl. the server's
runtime_chunk_size=16   # the streaming step's chunk (encoder frames) ...
runtime_left_chunks=4   # ... and left chunks kept in its cache
runtime_chunks=""       # chunk sizes decoded in stage 7; default "-1 $runtime_chunk_size"
runtime_threads=1
tables_bench=""         # benchmark JSON files for stage 12 (python -m wenet_eff.bin.benchmark)

# run.sh --help: the shared stage table, the recipe's own (corpus_stages) and the options with
# their defaults: run.sh's own lines (its options and the defaults it changes), then these.
recipe_help() {
  echo "Usage: $0 [--stage N] [--stop_stage N] [--force true|false] [--<option> <value> ...]"
  echo
  echo "Stages of every recipe (tools/recipe_stages.sh):"
  shared_stages
  echo
  echo "Stages of this recipe ($0):"
  corpus_stages | grep . || echo "  none besides stage 0, its data preparation"
  echo
  echo "Options of this recipe ($0):"
  sed -n '/^\. tools\/recipe_defaults\.sh/,/^\. tools\/parse_options\.sh/p' "$0" \
    | grep -E '^[a-z][a-z0-9_]*=' | grep -v '^help_message=' | sed 's/^/  --/'
  echo
  echo "Options of every recipe (tools/recipe_defaults.sh):"
  grep -E '^[a-z][a-z0-9_]*=' tools/recipe_defaults.sh | sed 's/^/  --/'
}
