"""The SQLite store: ``store`` writes (sqlite-utils), ``reader`` reads fast (sqlite3)."""
