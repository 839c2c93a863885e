"""The `tinytrain` command: serve, worker, train, keys, db."""
