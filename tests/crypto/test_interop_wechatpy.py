"""Interoperation, both ways, with wechatpy: an independent implementation of the same scheme."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

from crypto import WeComCrypto, signature
from tests.crypto._support import AES_KEY, CORP_ID, MODEST, TOKEN, raw_key

TIMESTAMP = "1476422779"
NONCE = "1597212914"
EVENT = (
    "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>"
    "<FromUserName><![CDATA[ChenJiaShun]]></FromUserName><CreateTime>1476422779</CreateTime>"
    "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>"
    "<Content>你好</Content><AgentID>1000002</AgentID></xml>"
)


def _ours(receive_id: str = CORP_ID, token: str = TOKEN) -> WeComCrypto:
    return WeComCrypto(token=token, encoding_aes_key=AES_KEY, receive_id=receive_id)


def _wechatpy_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, encrypted)
    return str(signer.signature)


def _envelope(encrypted: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        "<AgentID><![CDATA[1000002]]></AgentID></xml>"
    )


def _wechatpy_to_ours(message: str, receive_id: str = CORP_ID) -> bytes:
    reply = WeChatCrypto(TOKEN, AES_KEY, receive_id).encrypt_message(message, NONCE, TIMESTAMP)
    # wechatpy's own output, parsed only to lift its four fields out.
    root = ET.fromstring(reply)  # noqa: S314
    fields = {name: root.findtext(name) or "" for name in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")}
    assert (fields["TimeStamp"], fields["Nonce"]) == (TIMESTAMP, NONCE)
    return _ours(receive_id).decrypt_verified(
        fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"], fields["Encrypt"]
    )


def _ours_to_wechatpy(message: str, receive_id: str = CORP_ID) -> str:
    ours = _ours(receive_id)
    encrypted = ours.encrypt(message.encode("utf-8"))
    msg_signature = ours.sign(TIMESTAMP, NONCE, encrypted)
    return str(WeChatCrypto(TOKEN, AES_KEY, receive_id).decrypt_message(
        _envelope(encrypted), msg_signature, TIMESTAMP, NONCE
    ))


def test_wechatpy_encrypt_message_is_verified_and_decrypted_by_ours() -> None:
    assert _wechatpy_to_ours(EVENT) == EVENT.encode("utf-8")


def test_ours_encrypted_and_signed_is_decrypted_by_wechatpy_decrypt_message() -> None:
    assert _ours_to_wechatpy(EVENT) == EVENT


def test_our_echostr_passes_wechatpy_check_signature() -> None:
    ours = _ours()
    echostr = ours.encrypt(b"1288432023552776189")
    msg_signature = ours.sign(TIMESTAMP, NONCE, echostr)

    wechatpy = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
    plaintext = wechatpy.check_signature(msg_signature, TIMESTAMP, NONCE, echostr)

    assert plaintext == "1288432023552776189"


def test_wechatpy_echostr_passes_our_verification() -> None:
    echostr = PrpCrypto(raw_key()).encrypt("1288432023552776189", CORP_ID).decode("ascii")
    msg_signature = _wechatpy_signature(TOKEN, TIMESTAMP, NONCE, echostr)

    assert _ours().decrypt_verified(msg_signature, TIMESTAMP, NONCE, echostr) == b"1288432023552776189"


@MODEST
@given(message=st.text(), receive_id=st.text(max_size=64))
def test_interop_both_ways_for_any_text_and_receive_id(message: str, receive_id: str) -> None:
    assert _wechatpy_to_ours(message, receive_id) == message.encode("utf-8")
    assert _ours_to_wechatpy(message, receive_id) == message


@MODEST
@given(token=st.text(), timestamp=st.text(), nonce=st.text(), encrypted=st.text())
def test_signature_agrees_with_wechatpys_byte_sorted_signer(
    token: str, timestamp: str, nonce: str, encrypted: str
) -> None:
    ours = signature(token, timestamp, nonce, encrypted)

    assert ours == _wechatpy_signature(token, timestamp, nonce, encrypted)
