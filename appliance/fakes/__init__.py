"""Real fake peers (a scripted OpenAI-compatible server) for tests, benchmarks and load runs."""
