"""Training: losses, KL schedules, optimizers, precision, the one training step, the trainer, run folders,
the memory probe, torch.compile warm-up and distributed helpers."""
