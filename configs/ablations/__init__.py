"""Ablation configs: every variant x seed of the default recipe."""
