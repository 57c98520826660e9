"""Training: feature cache, configs, losses, loop and val metrics."""
