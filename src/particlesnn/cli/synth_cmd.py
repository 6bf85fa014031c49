"""Commands: synth_cmd (being written)."""
