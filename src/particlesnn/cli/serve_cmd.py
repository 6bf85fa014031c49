"""Commands: serve_cmd (being written)."""
