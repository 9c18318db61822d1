"""Evaluate: model metrics, policy values (true and off-policy), plots and the report."""
