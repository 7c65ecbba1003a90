"""Evaluation through the engines: run a model over the prompts once (its generations timed apart from its
load), paired speed rounds, teacher-forced fidelity to a baseline and task accuracy, and eval-compare's loop."""
