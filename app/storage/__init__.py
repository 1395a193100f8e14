"""Files: the artifact store (datasets and trained models) and parsing of uploaded tables."""
