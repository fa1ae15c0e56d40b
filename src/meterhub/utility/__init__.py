"""meterhub.utility."""
