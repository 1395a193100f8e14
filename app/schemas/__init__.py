"""Pydantic models: the job spec (validated at the edge) and the API's request/response shapes."""
