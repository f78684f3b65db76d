"""Rules every role shares and nothing else owns: movie ids, settings from the environment, JSON-lines
logs, experiment assignment. The bottom layer: it imports no other package of this project."""
