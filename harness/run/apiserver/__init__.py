"""The API-server tier: each object a recipe creates, dry-run through a real kube-apiserver."""
