"""convlog's benchmark suite: ours next to the raw nats-py baseline, measured in the same run."""
