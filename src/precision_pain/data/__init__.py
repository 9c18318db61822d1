"""Data: the contract a cohort must follow, PGx translation, the synthetic cohort, preparation,
splits and the model features."""
