"""Running: the session that measures one case, child processes and isolation, sweeps, LoRA switching and
the self-check."""
