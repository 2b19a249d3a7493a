"""Database layer: the declarative base, the engine and sessions."""
