"""Fitting the hardware: measured max batch size, quantization, distributed training, torch.compile."""
