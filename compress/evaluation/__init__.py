"""The evaluation engine: run a model over the prompts once, time its generations apart from its load."""
