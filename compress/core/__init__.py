"""The bottom layer: errors, paths, prompts, atomic writes, provenance and pure metrics (text similarity,
teacher-forced fidelity, task accuracy). Imports nothing else of compress."""
