"""Alembic schema migrations for the node database (run by `Database.upgrade()` at start-up)."""
