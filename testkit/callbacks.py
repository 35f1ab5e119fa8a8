"""Builds callbacks as WeCom sends them: an encrypted, signed envelope and its query."""

from __future__ import annotations

from dataclasses import dataclass

from crypto import WeComCrypto

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORP_ID = "ww1436e0e65a779aee"
AGENT_ID = 1000002


@dataclass(frozen=True)
class SignedCallback:
    """What one POST to /wecom/callback carries."""

    query: dict[str, str]
    body: bytes


def envelope(encrypted: str, *, to_user: str = CORP_ID, agent_id: int = AGENT_ID) -> bytes:
    """The outer XML around a ciphertext."""
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        f"<AgentID><![CDATA[{agent_id}]]></AgentID></xml>"
    ).encode()


def sign_ciphertext(encrypted: str, *, timestamp: int, nonce: str = "1597212914",
                    crypto: WeComCrypto | None = None) -> SignedCallback:
    """Sign an arbitrary ciphertext (valid or not) so that it reaches the layers behind the signature."""
    signer = crypto or WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID)
    query = {
        "msg_signature": signer.sign(str(timestamp), nonce, encrypted),
        "timestamp": str(timestamp),
        "nonce": nonce,
    }
    return SignedCallback(query=query, body=envelope(encrypted))


def encrypt_callback(message: str, *, timestamp: int, receive_id: str = CORP_ID,
                     nonce: str = "1597212914") -> SignedCallback:
    """Encrypt and sign a message as WeCom does."""
    crypto = WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=receive_id)
    return sign_ciphertext(crypto.encrypt(message.encode()), timestamp=timestamp, nonce=nonce, crypto=crypto)


def event_xml(event: str, member_id: str, *, create_time: int, corp_id: str = CORP_ID, extra: str = "") -> str:
    """The decrypted XML of an event callback."""
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{member_id}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{extra}<AgentID>{AGENT_ID}</AgentID></xml>"
    )
