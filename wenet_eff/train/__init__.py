"""Training: the loop (trainer), training engines (engine: plain/DDP, expert parallel,
DeepSpeed), optimizers and schedules (optim), checkpoints and resuming (checkpoint, resume),
model averaging (average), validation (validate), what training reports (reporting), stability
instruments and the divergence guard (stability), and process-group setup (dist)."""
