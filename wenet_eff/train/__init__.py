"""Training: the loop (trainer), optimizers and schedules (optim), checkpoints and resuming
(checkpoint), model averaging (average), validation (validate), reporting (monitor), and
DDP / DeepSpeed setup (dist)."""
