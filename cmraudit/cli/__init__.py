"""Command-line interface (typer). ``python -m cmraudit`` works too."""
