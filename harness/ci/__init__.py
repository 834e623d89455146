"""CI helpers behind the workflows: the PR gate, the nightly matrix and its aggregation."""
