"""The local base models the tests run on (made here from PyPI packages), their registry, and folders made
wrong on purpose. Imports core, folders and engines (a made model is checked by answering once)."""
