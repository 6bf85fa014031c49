"""Commands: detect_cmd (being written)."""
