"""Persistence: database models and sessions, migrations, the object store."""
