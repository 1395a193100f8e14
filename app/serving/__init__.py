"""Serving trained models: a bounded cache of loaded models and batched prediction."""
