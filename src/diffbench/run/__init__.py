"""Running: the session that measures one case, child processes and isolation, sweeps, LoRA switching, the self-check."""
