"""Models: the model types (fit, save, load), the propensity model, training and the bundle."""
