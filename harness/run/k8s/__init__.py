"""The `gpu` stage: deploy a recipe to a real Kubernetes cluster, probe it, benchmark it and tear it down."""
