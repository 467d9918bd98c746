"""Settings (one TOML file validated by pydantic, overridden by environment variables), accounts and the
user's files."""
