"""meterhub.card."""
