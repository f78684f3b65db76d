"""db_utils package."""
