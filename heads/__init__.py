"""Heads trained on cached features: labels and gold standards, alignment, models, metrics, plots."""
