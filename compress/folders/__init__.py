"""Model folders on disk: the checks made before a load, atomic writes with a manifest, content digests and
fingerprints, and the matrix (which folders are variants, which is the baseline). Imports core only."""
