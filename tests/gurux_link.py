"""A blocking TCP transport for gurux-dlms's sans-IO client (GPL, a test oracle only,
never imported by src/meterhub), IEC 62056-47 wrapper, and Gurux's stock management
client settings."""

from __future__ import annotations

import socket

from gurux_dlms import GXByteBuffer, GXDLMSException, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.secure import GXDLMSSecureClient

from meterhub.protocols.dlms.security import Suite0Keys


def gurux_management_client(keys: Suite0Keys, title: bytes) -> GXDLMSSecureClient:
    """Gurux's stock secure client: HLS-GMAC and suite 0 with authenticated encryption;
    only the system title and the two keys are set."""
    c = GXDLMSSecureClient(True, 1, 1, Authentication.HIGH_GMAC, None, InterfaceType.WRAPPER)
    c.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
    c.ciphering.systemTitle = bytearray(title)
    c.ciphering.blockCipherKey = bytearray(keys.encryption_key)
    c.ciphering.authenticationKey = bytearray(keys.authentication_key)
    return c


class GuruxTcp:
    """A blocking TCP transport for a Gurux client using the wrapper interface."""

    def __init__(self, client: GXDLMSSecureClient, port: int, host: str = "127.0.0.1") -> None:
        self.client = client
        self.sock = socket.create_connection((host, port), timeout=10)

    def _packet(self, frame: bytes, reply: GXReplyData) -> None:
        self.sock.sendall(bytes(frame))
        buf, notify = GXByteBuffer(), GXReplyData()
        while not self.client.getData(buf, reply, notify):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the meter closed the connection")
            buf.set(chunk)

    def exchange(self, frames) -> GXReplyData:
        """Send each frame, follow block transfer (receiverReady), return the last reply."""
        reply = GXReplyData()
        for frame in frames:
            reply = GXReplyData()
            self._packet(frame, reply)
            while reply.isMoreData():
                self._packet(self.client.receiverReady(reply), reply)
        return reply

    def read(self, obj, attribute: int):
        reply = self.exchange(self.client.read(obj, attribute))
        if reply.error:  # a data-access-result; Gurux's own reader raises it like this
            raise GXDLMSException(reply.error)
        self.client.updateValue(obj, attribute, reply.value)
        return obj

    def associate(self) -> None:
        self.client.parseAareResponse(self.exchange(self.client.aarqRequest()).data)
        if self.client.authentication == Authentication.HIGH_GMAC:
            reply = self.exchange(self.client.getApplicationAssociationRequest())
            self.client.parseApplicationAssociationResponse(reply.data)

    def release(self) -> None:
        self.exchange(self.client.releaseRequest())
        self.sock.close()
