"""Settings, job records and their lifecycle: shared by api/ and worker/, importing neither."""
