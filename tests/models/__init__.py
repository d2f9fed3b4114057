"""Training code (torch): data, metrics, encoders, generator, diffusion, gate, bundles."""
