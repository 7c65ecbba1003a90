"""Model folders: checking them, and making the local models the tests and the main job run on."""
