"""Persistence: SQLAlchemy Core tables, Alembic migrations, and small repositories.

SQLite (a file) is the embedded default; PostgreSQL (``postgresql+psycopg://``) is the
production store. Both run the same migrations and the same code.
"""
