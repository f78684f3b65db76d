"""data_parsing package."""
