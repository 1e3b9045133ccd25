"""The catalog: its file format (models), the safe YAML reader, loading, surgical edits and the locked store."""
