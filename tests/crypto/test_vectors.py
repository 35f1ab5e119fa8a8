"""Tencent's official WXBizMsgCrypt sample, checked byte for byte."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from crypto import WeComCrypto, signature
from tests.crypto._support import fixed_random, official_vectors, raw_decrypt, raw_key


def _crypto() -> WeComCrypto:
    vectors = official_vectors()
    return WeComCrypto(
        token=vectors["token"], encoding_aes_key=vectors["encoding_aes_key"], receive_id=vectors["corp_id"]
    )


def _encrypt_element(post_body: str) -> str:
    # The sample is a trusted local file; the service itself parses with entity expansion off.
    encrypt = ET.fromstring(post_body).findtext("Encrypt")  # noqa: S314
    assert encrypt is not None
    return encrypt


def test_verify_url_signature_verifies_and_echostr_decrypts() -> None:
    case = official_vectors()["verify_url"]
    crypto = _crypto()

    crypto.verify(case["msg_signature"], case["timestamp"], case["nonce"], case["echostr"])
    plaintext = crypto.decrypt_verified(
        case["msg_signature"], case["timestamp"], case["nonce"], case["echostr"]
    )

    assert plaintext == case["expected_plaintext"].encode()


def test_decrypt_message_signature_over_encrypt_verifies_and_decrypts() -> None:
    case = official_vectors()["decrypt_message"]
    encrypted = _encrypt_element(case["post_body"])
    crypto = _crypto()

    crypto.verify(case["msg_signature"], case["timestamp"], case["nonce"], encrypted)
    plaintext = crypto.decrypt_verified(case["msg_signature"], case["timestamp"], case["nonce"], encrypted)

    assert plaintext == case["expected_plaintext"].encode("utf-8")


def test_signature_function_reproduces_both_official_signatures() -> None:
    vectors = official_vectors()
    url, message = vectors["verify_url"], vectors["decrypt_message"]

    assert signature(vectors["token"], url["timestamp"], url["nonce"], url["echostr"]) == url["msg_signature"]
    encrypted = _encrypt_element(message["post_body"])
    assert (
        signature(vectors["token"], message["timestamp"], message["nonce"], encrypted)
        == message["msg_signature"]
    )


def test_encrypting_with_the_samples_random_prefix_reproduces_the_samples_ciphertext() -> None:
    vectors = official_vectors()
    key = raw_key(vectors["encoding_aes_key"])
    cases = [
        (vectors["verify_url"]["echostr"], vectors["verify_url"]["expected_plaintext"]),
        (
            _encrypt_element(vectors["decrypt_message"]["post_body"]),
            vectors["decrypt_message"]["expected_plaintext"],
        ),
    ]
    for encrypted, plaintext in cases:
        # CBC decryption of the first block gives back the 16 random bytes the sample drew.
        prefix = raw_decrypt(encrypted, key)[:16]
        crypto = WeComCrypto(
            token=vectors["token"],
            encoding_aes_key=vectors["encoding_aes_key"],
            receive_id=vectors["corp_id"],
            random_bytes=fixed_random(prefix),
        )

        assert crypto.encrypt(plaintext.encode("utf-8")) == encrypted
