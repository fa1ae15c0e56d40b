"""meterhub.protocols.sml."""
