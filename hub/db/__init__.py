"""Storage: SQLAlchemy models, the engine and migrations."""
