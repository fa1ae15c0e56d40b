"""meterhub.protocols.iso7816."""
