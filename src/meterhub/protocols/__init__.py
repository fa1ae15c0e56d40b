"""meterhub.protocols."""
