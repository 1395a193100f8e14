"""Use cases behind the API: each takes a session and typed arguments, and raises ServiceError."""
