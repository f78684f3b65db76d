"""Stand-ins for the streaming-site simulator: demo and synthetic streams in its exact log formats."""
