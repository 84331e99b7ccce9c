"""Drift signals: MMD on latents, M's prediction residual, reward (rolling mean and CUSUM)."""
