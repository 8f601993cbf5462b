"""The context stage: read every file, rank the relevant ones, pack them into a token budget."""
