"""Performance estimates from AIConfigurator (PyPI `aiconfigurator`, NVIDIA's offline performance model
for Dynamo deployments): predicted throughput and latency for a model, GPU, backend, parallelism and
ISL/OSL where its databases cover them, written as a recipe's `targets` with `kind: estimate`.

- env.py:     the package in a venv of its own under ~/.cache/recipe-harness/aiconfigurator/<version>/
- driver.py:  runs inside that env (`cli_estimate`, support matrix, database versions); never imports the harness
- predict.py: requests from a recipe or from explicit values, the answers (Estimate or NoCoverage), targets
"""
