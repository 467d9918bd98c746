"""The decision clients: the OpenAI-compatible model client and the rule-based baseline."""
