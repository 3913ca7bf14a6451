"""The operator's and the developer's tools over the SDK and the server: replay and
audit of a data directory, the demo market, the market simulator, the load generator,
a seller's export to Slurm and Kubernetes, the pure-Python reference model of the
engine, and a server in a process of its own for tests and benchmarks."""
