"""Alembic migrations of the archive, shipped inside the package."""
