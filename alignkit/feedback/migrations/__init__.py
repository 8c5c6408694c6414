"""Alembic migrations of the feedback store (a package so that wheels ship them)."""
