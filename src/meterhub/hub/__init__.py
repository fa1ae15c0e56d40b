"""meterhub.hub."""
