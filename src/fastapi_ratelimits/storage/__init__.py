"""Where counters live: the Store protocol, the memory store, Redis, the breaker and the refusal cache."""
