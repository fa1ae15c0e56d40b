"""meterhub.card.gp."""
