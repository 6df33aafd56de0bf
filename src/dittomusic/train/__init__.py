"""Training loops (base diffusion model; distillation reuses the same machinery)."""
