"""meterhub.tariffs."""
