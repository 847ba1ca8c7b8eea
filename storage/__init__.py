"""The data layer: canonical tables, database connections, loading and the demo company."""
