"""A trained run at work: recommendations from a run folder (inference) and fine-tuning from new feedback."""
