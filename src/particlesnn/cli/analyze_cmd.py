"""Commands: analyze_cmd (being written)."""
