"""What follows from a recipe: engine topology, GPU sizing, storage, the generated catalogue docs."""
