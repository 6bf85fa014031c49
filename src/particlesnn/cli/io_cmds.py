"""Commands: io_cmds (being written)."""
