"""meterhub.applets."""
