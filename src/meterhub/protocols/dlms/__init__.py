"""meterhub.protocols.dlms."""
