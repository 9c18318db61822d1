"""Predict: ranking, guideline checks, confidence flags, explanations, outputs and serving."""
