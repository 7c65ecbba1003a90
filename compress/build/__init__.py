"""recipe -> steps -> model folders: recipes (plain TOML data, validated) and the matrix build that runs the
builders' steps. Imports core, folders, builders and local_models."""
