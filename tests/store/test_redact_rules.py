"""Each detector on its own: true positives (realistic fake secrets, generated per run from a
seed) and false positives (near-misses that must stay), as gitleaks tests its rules."""

from __future__ import annotations

import functools
import json
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrail.store.redaction import rules as R
from aitrail.store.redaction.matcher import Matcher

from .redaction_samples import ALNUM, B64, UPPER32, URLSAFE, Fakes, break_luhn

F = Fakes(3)
RULES = {r.name: r for r in R.BUILTIN}

# (rule, text, secret): the rule must find exactly `secret` in `text`.
TRUE_POSITIVES: list[tuple[str, str, str]] = [
    (rule, text.format(s=secret), secret) for rule, text, secret in [
        ("aws-access-key-id", "aws_access_key_id={s}", F.aws_key_id()),
        ("aws-access-key-id", '{{"AccessKeyId": "{s}"}}', "ASIA" + F.s(UPPER32, 16)),
        ("aws-secret-access-key", "aws_secret_access_key = {s}", F.aws_secret()),
        ("aws-secret-access-key", 'AWS_SECRET_ACCESS_KEY="{s}"', F.aws_secret()),
        ("gcp-api-key", "key={s}&q=paris", F.gcp_api_key()),
        ("gcp-oauth-client-secret", "client_secret: {s}", "GOCSPX-" + F.s(URLSAFE, 28)),
        ("azure-ad-client-secret", "secret {s} expires", F.s(ALNUM, 3) + "8Q~" + F.s(ALNUM, 34)),
        ("alibaba-access-key-id", "id {s}", "LTAI" + F.s(ALNUM, 20)),
        ("digitalocean-token", "DO_TOKEN={s}", "dop_v1_" + F.s("0123456789abcdef", 64)),
        ("github-pat", "token {s}", F.github_pat()),
        ("github-oauth", "{s}", "gho_" + F.s(ALNUM, 36)),
        ("github-app-token", "{s}", "ghs_" + F.s(ALNUM, 36)),
        ("github-refresh-token", "{s}", "ghr_" + F.s(ALNUM, 36)),
        ("github-fine-grained-pat", "GH_TOKEN={s}", F.github_fine_grained()),
        ("gitlab-pat", "PRIVATE-TOKEN: {s}", F.gitlab_pat()),
        ("gitlab-token", "runner {s}", "glrt-" + F.s(URLSAFE, 20)),
        ("gitlab-token", "{s}", "GR1348941" + F.s(URLSAFE, 20)),
        ("bitbucket-app-password", "{s}", "ATBB" + F.s(ALNUM, 32)),
        ("npm-access-token", "//registry.npmjs.org/:_authToken={s}", F.npm()),
        ("pypi-upload-token", "password = {s}", "pypi-AgEIcHlwaS5vcmc" + F.s(URLSAFE, 70)),
        ("slack-token", "SLACK_BOT_TOKEN={s}", F.slack_bot()),
        ("slack-token", "xoxp {s}", "xoxp-" + F.s("0123456789", 11) + "-" + F.s("0123456789", 12)
         + "-" + F.s("0123456789", 13) + "-" + F.s("0123456789abcdef", 32)),
        ("slack-app-token", "{s}", "xapp-1-A" + F.s("ABCDEFGHJK0123456789", 10) + "-"
         + F.s("0123456789", 13) + "-" + F.s("0123456789abcdef", 64)),
        ("slack-webhook-url", "post to https://{s}", "hooks.slack.com/services/T"
         + F.s(ALNUM, 8) + "/B" + F.s(ALNUM, 10) + "/" + F.s(ALNUM, 24)),
        ("stripe-key", "Stripe key {s}.", F.stripe_live()),
        ("stripe-key", "{s}", "rk_live_" + F.s(ALNUM, 99)),
        ("stripe-webhook-secret", "{s}", "whsec_" + F.s(ALNUM, 32)),
        ("openai-api-key", "OPENAI_API_KEY={s}", F.openai_project()),
        ("openai-api-key", "{s}", "sk-" + F.s(ALNUM, 20) + "T3BlbkFJ" + F.s(ALNUM, 20)),
        ("anthropic-api-key", "x-api-key: {s}", F.anthropic()),
        ("huggingface-token", "HF_TOKEN={s}", F.huggingface()),
        ("groq-api-key", "{s}", "gsk_" + F.s(ALNUM, 52)),
        ("perplexity-api-key", "{s}", "pplx-" + F.s(ALNUM, 48)),
        ("xai-api-key", "{s}", "xai-" + F.s(ALNUM, 80)),
        ("replicate-api-token", "{s}", "r8_" + F.s(ALNUM, 37)),
        ("sendgrid-api-token", "{s}", F.sendgrid()),
        ("twilio-api-key", "sid {s}", "SK" + F.s("0123456789abcdef", 32)),
        ("mailchimp-api-key", "{s}", F.s("0123456789abcdef", 32) + "-us14"),
        ("shopify-token", "{s}", "shpat_" + F.s("0123456789abcdef", 32)),
        ("square-token", "{s}", "sq0atp-" + F.s(URLSAFE, 22)),
        ("databricks-token", "{s}", "dapi" + F.s("0123456789abcdef", 32)),
        ("doppler-token", "{s}", "dp.pt." + F.s(ALNUM, 43)),
        ("linear-api-key", "{s}", "lin_api_" + F.s(ALNUM, 40)),
        ("pulumi-api-token", "{s}", "pul-" + F.s("0123456789abcdef", 40)),
        ("grafana-token", "{s}", "glsa_" + F.s(ALNUM, 32) + "_" + F.s("0123456789abcdef", 8)),
        ("sentry-token", "{s}", "sntryu_" + F.s("0123456789abcdef", 64)),
        ("vault-token", "VAULT_TOKEN={s}", "hvs." + F.s(URLSAFE, 95)),
        ("heroku-api-key", "{s}", "HRKU-AA" + F.s(URLSAFE, 58)),
        ("postman-api-token", "{s}", "PMAK-" + F.s("0123456789abcdef", 24) + "-"
         + F.s("0123456789abcdef", 34)),
        ("notion-api-token", "{s}", "ntn_" + F.s("0123456789", 11) + F.s(ALNUM, 35)),
        ("new-relic-key", "{s}", "NRAK-" + F.s(string.ascii_uppercase + "0123456789", 27)),
        ("atlassian-api-token", "{s}", "ATATT3" + F.s(URLSAFE, 186)),
        ("telegram-bot-token", "bot token {s} for alerts",
         F.s("0123456789", 10) + ":AA" + F.s(URLSAFE, 33)),
        ("onepassword-token", "{s}", "ops_eyJ" + F.s(B64, 260)),
        ("private-key", "key:\n{s}\n", F.pem()),
        ("private-key", "{s}", F.pem("EC PRIVATE KEY", 3)),
        ("private-key", "{s}", F.pem("OPENSSH PRIVATE KEY", 8)),
        ("private-key", "{s}", F.pem("PRIVATE KEY", 10)),
        ("private-key", "{s}", F.pem("PGP PRIVATE KEY BLOCK", 10)),
        ("age-secret-key", "{s}", "AGE-SECRET-KEY-1" + F.s("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)),
        ("jwt", "token={s};", F.jwt()),
        ("bearer-token", "Authorization: Bearer {s}", F.s(ALNUM, 32)),
        ("bearer-token", "authorization: bearer {s}", F.s(URLSAFE, 40) + "."),
        ("basic-auth", "Authorization: Basic {s}", "YWxhZGRpbjpvcGVuc2VzYW1l"),
        ("url-credentials", "postgres://user:{s}@host/db", "pa55w0rd!"),
        ("url-credentials", "mongodb+srv://admin:{s}@cluster0.x.mongodb.net/", F.password()),
        ("url-credentials", "redis://:{s}@cache:6379/0", F.password()),
        ("url-credentials", "postgres://app:{s}@db:5432/x", "p@ss:w0rd"),  # unencoded @
        ("url-credentials", "https://deploy:{s}@git.acme.dev/app.git", F.s(ALNUM, 20)),
        ("connection-string-password", "Server=tcp:db.acme.net,1433;Database=orders;"
         "User ID=app;Password={s};Encrypt=true", "Xq9!vL2#pw"),
        ("azure-storage-key", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={s};",
         F.s(B64, 86) + "=="),
        ("sas-signature", "https://acme.blob.core.windows.net/c/f?sv=2022-11-02&sig={s}",
         F.s(ALNUM, 43) + "%3D"),
        ("password-assignment", 'password = "{s}"', "hunter2"),
        ("password-assignment", "DB_PASSWORD={s}", F.password()),
        ("password-assignment", "passwd: {s}", "Tr0ub4dor&3"),
        ("password-assignment", "my password is: {s}", "s3cret-Pass"),
        ("password-assignment", '{{"password": "{s}"}}', "correct horse battery staple"),
        ("password-assignment", "pwd={s}", "P@ssw0rd"),
        ("generic-secret-assignment", "api_key = '{s}'", F.s(ALNUM, 32)),
        ("generic-secret-assignment", "CLIENT_SECRET={s}", F.s(ALNUM, 24) + "9"),
        ("generic-secret-assignment", '"auth_token": "{s}"', F.s(ALNUM, 40)),
    ]
]


@pytest.mark.parametrize("rule,text,secret", TRUE_POSITIVES,
                         ids=[f"{r}-{n}" for n, (r, _, _) in enumerate(TRUE_POSITIVES)])
def test_rule_finds_its_secret(rule, text, secret):
    found = [text[s:e] for s, e, _ in RULES[rule].find(text)]
    assert found == [secret]


@pytest.mark.parametrize("rule,text,secret", TRUE_POSITIVES,
                         ids=[f"{r}-{n}" for n, (r, _, _) in enumerate(TRUE_POSITIVES)])
def test_prefilter_sees_every_true_positive_in_protobuf_like_bytes(rule, text, secret):
    """The hyperscan prefilter must match wherever the exact rule does, even with a length
    byte that is a letter right before the string (no \\b or anchors in a prefilter)."""
    m = _matcher(rule)
    data = text.encode()
    for framing in (b"", b"\x0aA", b"\x0a\x92\x01", b"J\x12\x0a"):
        assert m.ends(framing + data + b"J"), (rule, framing)


@functools.cache
def _matcher(rule: str) -> Matcher:
    return Matcher([RULES[rule].prefilter])


FALSE_POSITIVES: list[tuple[str, str]] = [
    ("aws-access-key-id", "AKIAIOSFODNN7EXAMPLE"),  # AWS documentation key
    ("aws-access-key-id", "XAKIA" + "Q" * 16),
    ("aws-access-key-id", "AKIAAAAAAAAAAAAAAAAA"),  # low entropy
    ("aws-secret-access-key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws-secret-access-key", "secret_access_key = !GetAtt AccessKey.SecretAccessKey"),
    ("gcp-api-key", "AIza is a prefix of Google keys"),
    ("github-pat", "ghp_ tokens are 40 characters"),
    ("github-pat", "ghp_" + "a" * 36),  # low entropy
    ("gitlab-pat", "glpat-short"),
    ("slack-token", "xoxb-... (redacted)"),
    ("stripe-key", "sk_live_ prefix"),
    ("openai-api-key", "sk-proj- keys are project scoped"),
    ("twilio-api-key", "SKIP" + "0" * 32),
    ("private-key", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----"),
    ("private-key", "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9 is the base64 of a header"),
    ("jwt", "eyJub3RhIjoiand0In0.eyJzdWIiOiJ4In0.sig"),  # header without alg/typ
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJ4eHh4eHh4eHh4eHh4eA.c2ln"),  # payload not JSON
    ("bearer-token", "Bearer authentication is used for the API"),
    ("bearer-token", 'headers = {"Authorization": f"Bearer {token}"}'),
    ("bearer-token", "Authorization: Bearer <token>"),
    ("basic-auth", "a basic understanding of the system"),
    ("basic-auth", "Basic dGVzdA=="),  # decodes to 'test': no user:password
    ("url-credentials", "https://docs.acme.dev/guide:intro@v2"),
    ("url-credentials", "postgres://user:${DB_PASSWORD}@db/orders"),
    ("url-credentials", "postgres://user:****@db/orders"),
    ("url-credentials", "git@github.com:acme/app.git"),
    ("url-credentials", "http://localhost:8080/health"),
    ("password-assignment", "password: required"),
    ("password-assignment", "def login(user: str, password: str) -> bool:"),
    ("password-assignment", 'password = getpass.getpass("Password: ")'),
    ("password-assignment", "password: ${DB_PASSWORD}"),
    ("password-assignment", 'password: "<your password here>"'),
    ("password-assignment", "password_hash = bcrypt.hashpw(password.encode(), salt)"),
    ("password-assignment", "Password reset link: https://acme.dev/reset?t=abc"),
    ("password-assignment", "pwd: /home/app"),
    ("password-assignment", "password = [REDACTED:password-assignment:0123456789ab]"),
    ("generic-secret-assignment", 'API_KEY = os.environ["OPENAI_API_KEY"]'),
    ("generic-secret-assignment", "token = auth.get_token(user, password)"),
    ("generic-secret-assignment", "secret_key = settings.SECRET_KEY"),
    ("generic-secret-assignment", "max_tokens: 4096"),
    ("generic-secret-assignment", "api_key: ${STRIPE_API_KEY}"),
    ("generic-secret-assignment", "secret_name = prod/checkout/stripe"),
    ("generic-secret-assignment", "token_count=1234567890123"),
    ("email", "version 1.2.3@latest"),
    ("phone", "2025-06-02 12:30:45"),
    ("phone", "10.0.1.18"),
]


@pytest.mark.parametrize("rule,text", FALSE_POSITIVES,
                         ids=[f"{r}-{n}" for n, (r, _) in enumerate(FALSE_POSITIVES)])
def test_rule_leaves_near_misses_alone(rule, text):
    assert list(RULES[rule].find(text)) == []


# -- payment cards ------------------------------------------------------------------------------

CARDS = [(brand, sep) for brand in ("visa", "mastercard", "amex", "discover", "visa13")
         for sep in ("", " ", "-") if not (brand == "visa13" and sep)]


@pytest.mark.parametrize("brand,sep", CARDS)
def test_luhn_valid_cards_of_each_brand_and_format_are_found(brand, sep):
    card = F.card(brand, sep)
    text = f"Please charge {card} today."
    assert [text[s:e] for s, e, _ in RULES["payment-card"].find(text)] == [card]


@pytest.mark.parametrize("brand,sep", CARDS)
def test_luhn_invalid_numbers_are_not_cards(brand, sep):
    card = break_luhn(F.card(brand, sep))
    assert list(RULES["payment-card"].find(f"order {card} shipped")) == []


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1111 12/27 123",        # expiry and CVV after the number
    "card:4111111111111111,",
    "{\"pan\": \"5555555555554444\"}",
    "line one\\n378282246310005",             # after a JSON escape
])
def test_cards_in_their_usual_surroundings(text):
    assert len(list(RULES["payment-card"].find(text))) == 1


@pytest.mark.parametrize("text", [
    "trace 4111111111111111abcdef",          # inside a hex id
    "call_94150462411943a1d36",
    "version 1.4111111111111111",
    "9400 1000 0000 0000 0000 00",           # a USPS tracking number
    "1234567890123456",                      # no card brand starts with 1
    "epoch 1717286400000000000",
    "4444444444444444",                      # one repeated digit... Luhn-valid? still refused
])
def test_numbers_that_are_not_cards(text):
    assert list(RULES["payment-card"].find(text)) == []


def test_luhn():
    assert R.luhn("4111111111111111") and R.luhn("79927398713")
    assert not R.luhn("4111111111111112")


# -- JSON safety --------------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
def test_pem_inside_a_json_string_is_found_whole_with_its_escapes(label):
    pem = F.pem(label, 6)
    encoded = json.dumps({"role": "user", "content": f"deploy with\n{pem}\nthanks"})
    (start, end, secret), = RULES["private-key"].find(encoded)
    assert secret == json.dumps(pem)[1:-1]
    masked = encoded[:start] + "[MASK]" + encoded[end:]
    assert json.loads(masked)["content"] == "deploy with\n[MASK]\nthanks"


def test_truncated_pem_without_end_is_still_masked_to_its_last_base64_char():
    pem = F.pem("RSA PRIVATE KEY", 8)[:300]
    (start, end, _), = RULES["private-key"].find(pem + '"')
    assert start == 0 and end == len(pem)


def test_pem_fingerprint_ignores_the_line_encoding():
    pem = F.pem("RSA PRIVATE KEY", 4)
    escaped = json.dumps(pem)[1:-1]
    rule = RULES["private-key"]
    assert rule.fingerprint_text(pem) == rule.fingerprint_text(escaped)
    assert rule.fingerprint_text(pem.replace("\n", "\r\n")) == rule.fingerprint_text(pem)


@pytest.mark.parametrize("rule,text,secret", [
    (r, t, s) for r, t, s in TRUE_POSITIVES
    if r in ("password-assignment", "generic-secret-assignment", "bearer-token", "jwt")])
def test_secret_groups_never_hold_a_quote_or_a_lone_backslash(rule, text, secret):
    encoded = json.dumps({"text": text})
    for start, end, found in RULES[rule].find(encoded):
        assert '"' not in found and not re.search(r"\\(?![nrt\\/])", found)
        json.loads(encoded[:start] + "[M]" + encoded[end:])


# -- the prefilter is derived safely ----------------------------------------------------------

def test_strip_assertions_removes_anchors_boundaries_and_lookarounds_only_outside_classes():
    assert R.strip_assertions(r"^\bab(?=c)d(?<!x)$") == "abd"
    assert R.strip_assertions(r"[\b^$]x(?:y|z)") == r"[\b^$]x(?:y|z)"
    assert R.strip_assertions(r"a(?!(b|c))d") == "ad"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TRUE_POSITIVES), st.binary(max_size=6), st.binary(max_size=6))
def test_prefilter_is_a_superset_whatever_bytes_surround_the_string(tp, before, after):
    rule, text, _ = tp
    assert _matcher(rule).ends(before + text.encode() + after)
