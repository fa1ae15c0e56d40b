"""meterhub.privacy."""
