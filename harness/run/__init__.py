"""Running recipes: the stage contract, the static tier, smoke and perf probes, the sim and k8s stages."""
