"""meterhub.meter."""
