"""Commands: evaluate_cmd (being written)."""
