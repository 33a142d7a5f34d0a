"""The HTTP layer: the error types and their statuses, and how the stage
exposes the endpoint (auth, CORS). Imports only the standard library."""
