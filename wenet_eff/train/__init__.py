"""Training: the loop (trainer), optimizers and schedules (optim), checkpoints and resuming
(checkpoint), model averaging (average), validation (validate), what training reports
(reporting), stability instruments and the divergence guard (stability), and DDP / DeepSpeed
setup (dist)."""
