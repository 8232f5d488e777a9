"""The retrieval agent: prompt template, model loading, sampling, multi-turn rollouts."""
