"""Runs jobs: the run-one-job function and the executors that deliver "run job X" to it."""
