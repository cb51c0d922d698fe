# Options shared by the corpus recipes (librispeech, aishell, wenetspeech), sourced by their
# run.sh before their own defaults and tools/parse_options.sh: every one can be set on the
# command line (--name value). The corpus run.sh overrides what differs (corpus, units, model).

stage=0
stop_stage=7
force=false
nj=8                    # parallel processes for data prep, CMVN and shards
data_type=shard         # raw | shard
num_utts_per_shard=1000
token_type=char         # char | bpe
nbpe=5000
normalize=english       # text normalisation of units and tokenizer: english | chinese | none
wer_char=0              # 1: score characters (CER), for Chinese
model=u2pp_conformer    # packaged model config (paper_dense_225m, paper_moe_1b, paper_dense_1b, ...)
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
nproc=1                 # CPU processes when num_gpus=0
train_engine=torch_ddp  # torch_ddp | deepspeed
deepspeed_config=conf/ds_stage2.json
average_num=30
decode_modes="ctc_greedy_search ctc_prefix_beam_search attention attention_rescoring"
beam_size=10
decode_batch_size=16
ctc_weight=0.3
reverse_weight=0.5
num_decoding_left_chunks=-1
# word LM fused into prefix beam search and rescoring (stage 5: <test_set>/lm/<mode>): an ARPA
# file (--lm_path, e.g. LibriSpeech's 3-gram) or an n-gram of the training transcripts built
# in stage 2 (--lm_order 3); neither: no LM
lm_order=0
lm_path=""
lm_weight=0.5
word_bonus=1.0
lm_beam_size=20
lm_min_token_logp=""    # e.g. -9.2: prefix search expands only tokens with p >= 1e-4 per frame
lm_modes="ctc_prefix_beam_search attention_rescoring"
init_checkpoint=""      # fine-tuning stages start from it (default: $dir/avg_$average_num.pt)
# streaming fine-tuning (stages 8-9)
streaming_dir=""        # default: ${dir}_streaming
ft_steps=20000
ft_lr=0.0005
ft_warmup=2000
decoding_chunks="16 -1"
ft_average_num=5        # checkpoints averaged after fine-tuning (stages 8-12; fewer epochs)
# compression (stages 10-12): QAT and sparse fine-tuning of $init_checkpoint
qat_configs="qat_int4 qat_int2_subchannel"
sparse_configs="sparse_2_4_step"
compress_steps=20000
compress_lr=0.0005
compress_warmup=1000
compress_modes="ctc_greedy_search attention_rescoring"
# C++ runtime (stages 6-7)
runtime_precisions="fp32 int8"
runtime_int8=auto       # auto: int8 only on CPUs with int8 dot products | always
runtime_formats="pt2 onnx"  # pt2 for decoder_main (needed by the runtime stage), onnx for onnxruntime
runtime_chunk_size=16
runtime_left_chunks=4
runtime_chunks=""       # default "-1 $runtime_chunk_size"
runtime_threads=1
common_help="  [--stage N] [--stop_stage N] [--force true|false] [--nj N] [--data_type raw|shard]
  [--token_type char|bpe] [--nbpe N] [--model NAME] [--dir exp/NAME] [--train_config conf/X.yaml]
  [--train_opts 'overrides'] [--max_epoch N] [--num_gpus N | --nproc N]
  [--num_nodes N --node_rank R --master_addr HOST --master_port P]
  [--train_engine torch_ddp|deepspeed] [--deepspeed_config conf/ds_stageN.json]
  [--average_num N] [--decode_modes '...'] [--beam_size N] [--ctc_weight X] [--reverse_weight X]
  [--lm_order N | --lm_path lm.arpa] [--lm_weight X] [--word_bonus X] [--lm_beam_size N]
  [--lm_min_token_logp X]
  [--ft_steps N] [--decoding_chunks '16 -1'] [--qat_configs '...'] [--sparse_configs '...']
  [--compress_steps N] [--runtime_precisions 'fp32 int8'] [--runtime_formats 'pt2 onnx'] [--runtime_chunk_size N]"
