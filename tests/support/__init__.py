"""What the tests and the benchmarks share: real processes (serve, workers, redis-server) on free
ports, API keys, and the data and job bodies they send."""
