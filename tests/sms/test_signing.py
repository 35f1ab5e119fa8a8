"""Each provider's signing against the example its document publishes (inputs and output copied from it)."""

from __future__ import annotations

from callback_service.clients.sms.aliyun import percent_encode, rpc_signature, string_to_sign
from callback_service.clients.sms.tencent import tc3_authorization

# cloud.tencent.com/document/api/382/52072 (签名方法 v3, 签名演示): the doc's masked keys are the
# literal inputs its signature was computed with.
TENCENT_PAYLOAD = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
TENCENT_AUTHORIZATION = (
    "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, "
    "SignedHeaders=content-type;host, "
    "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
)

# help.aliyun.com/document_detail/56189.html (短信服务 HTTP 协议及签名, 签名示例).
ALIYUN_PARAMS = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
ALIYUN_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D"
    "15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591"
    "%25E7%259F%25AD%25E4%25BF%25A1%25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26"
    "SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26"
    "SignatureVersion%3D1.0%26TemplateCode%3DSMS_71390007%26TemplateParam%3D%257B%2522customer%2522"
    "%253A%2522test%2522%257D%26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
)


def test_tencent_signs_the_documents_example_as_it_does() -> None:
    assert tc3_authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        payload=TENCENT_PAYLOAD,
        timestamp=1551113065,
    ) == TENCENT_AUTHORIZATION


def test_tencent_signature_changes_with_the_body() -> None:
    other = tc3_authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        payload=TENCENT_PAYLOAD.replace(b"1", b"2", 1),
        timestamp=1551113065,
    )
    assert other != TENCENT_AUTHORIZATION


def test_aliyun_builds_the_documents_string_to_sign() -> None:
    assert string_to_sign("GET", ALIYUN_PARAMS) == ALIYUN_STRING_TO_SIGN


def test_aliyun_signs_the_documents_example_as_it_does() -> None:
    assert rpc_signature("GET", ALIYUN_PARAMS, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_leaves_a_signature_parameter_out_of_what_it_signs() -> None:
    signed = {**ALIYUN_PARAMS, "Signature": "zJDF+Lrzhj/ThnlvIToysFRq6t4="}
    assert rpc_signature("GET", signed, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_percent_encoding_is_pops() -> None:
    # A space as %20 (not +), * as %2A, ~ kept: what Python's urlencode would get wrong.
    assert percent_encode("a b*~/") == "a%20b%2A~%2F"
