"""Developer tools (never shipped to the Lambda)."""
