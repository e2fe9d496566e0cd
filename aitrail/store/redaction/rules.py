"""The detectors: one row per rule, a data class, an exact `re` pattern and its confirmation.

Shapes follow gitleaks' default rules (ids, prefixes, lengths, entropy floors) for the classes
the issue names; cards, e-mail and phone are ours. Each rule has two patterns:

- `pattern` (Python `re`, ASCII): the exact match. Its groups named `s...` hold the secret
  (what is replaced and fingerprinted); without one, the whole match is the secret.
- `prefilter` (hyperscan): a superset of `pattern`, run over a request's serialized bytes.
  Strings sit in protobuf bytes next to length and tag bytes, so a prefilter has no
  boundaries or anchors (`strip_assertions` derives it) and no back-references.

A secret's replacement must keep JSON valid when the string is JSON (`gen_ai.input.messages`):
no secret group includes a quote, and a backslash only as part of a whole escape (`\\n`).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson

SECRET_CLASSES = ("cloud_key", "vcs_token", "saas_token", "private_key", "jwt", "bearer",
                  "password", "connection_string")
CLASSES = (*SECRET_CLASSES, "payment_card", "email", "phone", "custom")
DEFAULT_CLASSES = frozenset((*SECRET_CLASSES, "payment_card", "custom"))

# Overlapping hits in one string: the earliest wins, then the lower priority number, then the
# longer. Specific token shapes beat the generic `key = value` rules that also see them.
SPECIFIC, STRUCTURED, GENERIC, PII = 0, 1, 2, 3

# A token may follow a JSON escape (`...\ntoken`), where \b would see the `n`.
_L = r"(?:(?<=\\[nrt])|(?<![A-Za-z0-9_]))"
_R = r"(?![A-Za-z0-9_])"
# What may follow a generic value (after gitleaks): quote, space, separator or escape.
_END = r"(?=\\?[\"'`\s;,)}\]]|\\[nrt]|$)"

_PLACEHOLDER = re.compile(
    r"""^(?:\[REDACTED:[^\]]*\]|\*+|x+|X+|\.+|-+|<[^<>]*>|\$\{[^}]*\}|\$[A-Za-z_]\w*|
    \{\{[^}]*\}\}|%[A-Za-z_]\w*%|(?i:null|none|nil|true|false|undefined|redacted|changeme
    |password|secret|your[_-]?\w*|example\w*|placeholder|dummy|todo|tbd|n/?a|\*\*\*))$""",
    re.X | re.ASCII)


MARKER = re.compile(r"\[REDACTED:[A-Za-z0-9_.-]+:[0-9a-f]+\]")


def placeholder(value: str) -> bool:
    """Empty, masked, templated or an obvious stand-in: never a secret worth a mask."""
    return not value or "[REDACTED:" in value or bool(_PLACEHOLDER.match(value))


def entropy(s: str) -> float:
    """Shannon entropy in bits per character (gitleaks' floor: random keys score 4-6)."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


# -- confirmations ----------------------------------------------------------------------------

def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (IIN prefix range, lengths): Visa, Mastercard (51-55 and 2221-2720), Amex, Discover
# (6011, 644-649, 65, 622126-622925), Diners, JCB, UnionPay. Maestro (50, 56-69) is left out:
# it would make most 6-prefixed ids candidates.
_BRANDS: tuple[tuple[int, int, tuple[int, ...]], ...] = (
    (4, 4, (13, 16, 19)), (51, 55, (16,)), (2221, 2720, (16,)), (34, 34, (15,)),
    (37, 37, (15,)), (6011, 6011, (16, 17, 18, 19)), (644, 649, (16, 17, 18, 19)),
    (65, 65, (16, 17, 18, 19)), (622126, 622925, (16, 17, 18, 19)), (300, 305, (14, 16, 19)),
    (36, 36, (14, 16, 19)), (38, 39, (16, 19)), (3528, 3589, (16, 17, 18, 19)),
    (62, 62, (16, 17, 18, 19)),
)


def card_digits(text: str) -> str:
    return text.replace(" ", "").replace("-", "")


def payment_card(text: str) -> bool:
    """A known brand's prefix and length, a Luhn checksum, and not one repeated digit."""
    d = card_digits(text)
    if not 13 <= len(d) <= 19 or len(set(d)) < 2 or not luhn(d):
        return False
    for lo, hi, lengths in _BRANDS:
        k = len(str(lo))
        if lo <= int(d[:k]) <= hi and len(d) in lengths:
            return True
    return False


def _b64json(part: str) -> object:
    try:
        return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        return None


def jwt(token: str) -> bool:
    """Header and payload decode to JSON objects, and the header names an algorithm."""
    parts = token.split(".")
    header = _b64json(parts[0])
    return (isinstance(header, dict) and ("alg" in header or "typ" in header)
            and isinstance(_b64json(parts[1]), dict))


def basic_auth(value: str) -> bool:
    """`Basic` credentials decode to printable `user:password`."""
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    return ":" in raw and raw.isprintable()


def token_like(value: str) -> bool:
    """A bearer or generic key value: not a word, varied, with a digit or mixed case."""
    if placeholder(value) or re.fullmatch(r"[A-Za-z_.-]+", value, re.ASCII):
        return False
    digits = any(c.isdigit() for c in value)
    mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
    return digits or (mixed and len(value) >= 24)


def password_like(value: str) -> bool:
    """A password value rather than prose (`password: required`): a digit, an inner symbol
    or capital, or length; placeholders never."""
    if len(value) < 4 or placeholder(value):
        return False
    core = value.rstrip(".!?,;:")
    return (any(c.isdigit() for c in core) or any(not c.isalnum() for c in core)
            or any(c.isupper() for c in core[1:]) or len(core) >= 16)


def phone(text: str) -> bool:
    n = sum(c.isdigit() for c in text)
    return 8 <= n <= 15


# -- fingerprint normalisation: the same secret, however written, has one fingerprint ---------

def pem_body(block: str) -> str:
    inner = re.sub(r"-----(?:BEGIN|END)[^-]*-----", "", block)
    inner = re.sub(r"\\+[nrt]|\\+/|\s|[A-Za-z-]+:[^\\\n]*", "", inner)
    return inner or block


# -- rules ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    name: str
    cls: str
    pattern: re.Pattern[str]
    prefilter: str
    priority: int = SPECIFIC
    min_entropy: float = 0.0
    check: Callable[[str], bool] | None = None
    normalize: Callable[[str], str] | None = None
    allow: tuple[re.Pattern[str], ...] = ()
    groups: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        names = tuple(sorted(g for g in self.pattern.groupindex if re.fullmatch(r"s\d*", g)))
        object.__setattr__(self, "groups", names)

    def find(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, secret) of each confirmed hit in `text`; never inside an earlier mask
        (its rule name may read `password-assignment:...`)."""
        masks = [m.span() for m in MARKER.finditer(text)] if "[REDACTED:" in text else []
        for m in self.pattern.finditer(text):
            g = next((n for n in self.groups if m.start(n) >= 0), 0)
            secret = m.group(g)
            start, end = m.span(g)
            if not secret or any(a < end and start < b for a, b in masks):
                continue
            if self.min_entropy and entropy(secret) < self.min_entropy:
                continue
            if self.check is not None and not self.check(secret):
                continue
            if any(a.search(secret) for a in self.allow):
                continue
            yield start, end, secret

    def fingerprint_text(self, secret: str) -> str:
        return self.normalize(secret) if self.normalize else secret


def strip_assertions(pattern: str) -> str:
    """A hyperscan prefilter from an `re` pattern: drop anchors, word boundaries and
    lookarounds (each drop only widens the match), outside character classes."""
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if not in_class and nxt in "bBAZz":
                i += 2
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]" and not (out and out[-1] in ("[", "[^")):
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            if i < n and pattern[i] == "]":  # a literal ] first in a class
                out.append("]")
                i += 1
            continue
        if c in "^$":
            i += 1
            continue
        if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            i = _skip_group(pattern, i)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _skip_group(pattern: str, i: int) -> int:
    """Index just past the group that opens at `i`."""
    depth, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _rule(name: str, cls: str, pattern: str, prefilter: str | None = None, **kw: object) -> Rule:
    compiled = re.compile(pattern, re.ASCII)
    return Rule(name, cls, compiled, prefilter or strip_assertions(pattern), **kw)  # type: ignore[arg-type]


_EXAMPLE = (re.compile(r"EXAMPLE(?:KEY)?$"),)  # AWS documentation keys

# Generic `name = value` (after gitleaks' generic-api-key): a keyword, up to 20 name chars
# (and spaces, for passwords), an optional closing quote (escaped inside JSON), an operator,
# an optional opening quote.
_OPERATOR = r"""(?:\\?["'])?[ \t]{0,3}(?:=|:|:=|=>)[ \t]{0,3}(?:\\?["'`])?"""
_ASSIGN = r"[\w.-]{0,20}" + _OPERATOR
_PROSE_ASSIGN = r"[\w.-]{0,20}(?:[ \t]+(?:is|was|are))?" + _OPERATOR  # "password is: ..."
_PW_KEY = r"(?i:passw(?:or)?d|passphrase|(?<![a-z])pwd)"
_SECRET_KEY = (r"(?i:api[_.-]?key|apikey|secret|token|credentials?|access[_.-]?key"
               r"|auth[_.-]?key)")
# A quoted password may hold spaces and symbols, but never a quote or backslash (JSON-safe).
_PW_VALUE = (r"""(?:(?<=")(?P<s1>[^"\\\r\n]{4,128})(?=\\?")|(?<=')(?P<s2>[^'\\\r\n]{4,128})(?=')"""
             r"""|(?<![\"'])(?P<s3>[\w.=@#$%^&*!?+~-]{4,128})""" + _END + ")")

_PEM_BEGIN = r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
# Body: base64, headers (Proc-Type: 4,ENCRYPTED), line breaks raw or JSON-escaped (once or
# twice). Without an END (a value truncated by an SDK limit) the block runs to the body's end.
_PEM_BODY = r"(?:[A-Za-z0-9+/=:,.\s-]|\\{1,3}[nrt/])"

_CARD = (r"(?:(?<=\\[nrt])|(?<![\w.]))(?:"
         r"[2-6]\d{12,18}"
         r"|[2-6]\d{3}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{3})?"
         r"|3[47]\d{2}(?P<sep2>[ -])\d{6}(?P=sep2)\d{5}"
         r"|3[0689]\d{2}(?P<sep3>[ -])\d{6}(?P=sep3)\d{4}"
         r")(?![\w])")

BUILTIN: tuple[Rule, ...] = (
    # cloud provider keys
    _rule("aws-access-key-id", "cloud_key",
          _L + r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}" + _R,
          min_entropy=3.0, allow=_EXAMPLE),
    _rule("aws-secret-access-key", "cloud_key",
          r"(?i:aws[_.-]?)?(?i:secret[_.-]?(?:access[_.-]?)?key)" + _ASSIGN
          + r"(?P<s>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])", min_entropy=3.5, allow=_EXAMPLE),
    _rule("gcp-api-key", "cloud_key", r"AIza[A-Za-z0-9_-]{35}" + _R, min_entropy=3.5),
    _rule("gcp-oauth-client-secret", "cloud_key", r"GOCSPX-[A-Za-z0-9_-]{28}" + _R),
    _rule("azure-ad-client-secret", "cloud_key",
          _L + r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}" + _R, min_entropy=3.0),
    _rule("alibaba-access-key-id", "cloud_key", _L + r"LTAI[A-Za-z0-9]{20}" + _R,
          min_entropy=2.0),
    _rule("digitalocean-token", "cloud_key", r"do[opr]_v1_[a-f0-9]{64}" + _R),
    # VCS and package registry tokens
    _rule("github-pat", "vcs_token", r"ghp_[0-9A-Za-z]{36}", min_entropy=3.0),
    _rule("github-oauth", "vcs_token", r"gho_[0-9A-Za-z]{36}", min_entropy=3.0),
    _rule("github-app-token", "vcs_token", r"(?:ghu|ghs)_[0-9A-Za-z]{36}", min_entropy=3.0),
    _rule("github-refresh-token", "vcs_token", r"ghr_[0-9A-Za-z]{36}", min_entropy=3.0),
    _rule("github-fine-grained-pat", "vcs_token", r"github_pat_\w{82}", min_entropy=3.0),
    _rule("gitlab-pat", "vcs_token", r"glpat-[0-9A-Za-z_-]{20}(?:[0-9A-Za-z_.-]{0,280})",
          min_entropy=3.0),
    _rule("gitlab-token", "vcs_token",
          r"(?:gldt|glrt|glptt|glcbt|glsoat|gloas|glft|glimt|glagent|glffct)-[0-9A-Za-z_-]{20,}"
          r"|GR1348941[\w-]{20}", min_entropy=3.0),
    _rule("bitbucket-app-password", "vcs_token", _L + r"ATBB[A-Za-z0-9_=.-]{28,}" + _R,
          min_entropy=3.5),
    _rule("npm-access-token", "vcs_token", r"npm_[A-Za-z0-9]{36}" + _R, min_entropy=2.0),
    _rule("pypi-upload-token", "vcs_token", r"pypi-AgEIcHlwaS5vcmc[\w-]{50,}"),
    # SaaS and AI provider tokens
    _rule("slack-token", "saas_token", r"xox[abposer]-(?:\d-)?[0-9A-Za-z-]{10,250}",
          min_entropy=2.0),
    _rule("slack-app-token", "saas_token", r"(?i:xapp)-\d-[A-Z0-9]+-\d+-[a-z0-9]+"),
    _rule("slack-webhook-url", "saas_token",
          r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56}"),
    _rule("stripe-key", "saas_token", r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,99}" + _R,
          min_entropy=2.0),
    _rule("stripe-webhook-secret", "saas_token", r"whsec_[A-Za-z0-9]{32,}" + _R),
    _rule("openai-api-key", "saas_token",
          r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
          min_entropy=3.0),
    _rule("anthropic-api-key", "saas_token",
          r"sk-ant-(?:api|admin|sid|oat)\d\d-[A-Za-z0-9_-]{80,}"),
    _rule("huggingface-token", "saas_token", r"(?:hf_|api_org_)[A-Za-z]{34}" + _R,
          min_entropy=2.0),
    _rule("groq-api-key", "saas_token", r"gsk_[A-Za-z0-9]{52}" + _R),
    _rule("perplexity-api-key", "saas_token", r"pplx-[A-Za-z0-9]{48}" + _R, min_entropy=3.5),
    _rule("xai-api-key", "saas_token", r"xai-[A-Za-z0-9]{80}" + _R),
    _rule("replicate-api-token", "saas_token", r"r8_[A-Za-z0-9]{37}" + _R, min_entropy=3.0),
    _rule("sendgrid-api-token", "saas_token", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    _rule("twilio-api-key", "saas_token", _L + r"SK[0-9a-fA-F]{32}" + _R, min_entropy=3.0),
    _rule("mailchimp-api-key", "saas_token", _L + r"[0-9a-f]{32}-us\d{1,2}" + _R,
          min_entropy=3.0),
    _rule("shopify-token", "saas_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    _rule("square-token", "saas_token", r"sq0(?:atp|csp)-[\w-]{22,60}"),
    _rule("databricks-token", "saas_token", _L + r"dapi[a-f0-9]{32}(?:-\d)?" + _R,
          min_entropy=3.0),
    _rule("doppler-token", "saas_token", r"dp\.(?:pt|st|sa|ct)\.[A-Za-z0-9]{40,44}"),
    _rule("linear-api-key", "saas_token", r"lin_api_[A-Za-z0-9]{40}"),
    _rule("pulumi-api-token", "saas_token", r"pul-[a-f0-9]{40}" + _R),
    _rule("grafana-token", "saas_token",
          r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,3}"),
    _rule("sentry-token", "saas_token",
          r"sntryu_[a-f0-9]{64}|sntrys_eyJpYXQiO[A-Za-z0-9+/_=]{60,}"),
    _rule("vault-token", "saas_token", r"hv[sb]\.[\w-]{90,300}"),
    _rule("heroku-api-key", "saas_token", r"HRKU-AA[0-9A-Za-z_-]{58}"),
    _rule("postman-api-token", "saas_token", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    _rule("notion-api-token", "saas_token", r"ntn_\d{11}[A-Za-z0-9]{35}" + _R),
    _rule("new-relic-key", "saas_token", r"NR(?:AK|II|JS)-[A-Za-z0-9]{19,32}" + _R),
    _rule("atlassian-api-token", "saas_token", r"ATATT3[A-Za-z0-9_=-]{186}"),
    _rule("telegram-bot-token", "saas_token", _L + r"\d{8,10}:AA[0-9A-Za-z_-]{33}" + _R),
    _rule("onepassword-token", "saas_token", r"ops_eyJ[A-Za-z0-9+/]{250,}={0,3}"),
    # private keys
    _rule("private-key", "private_key",
          rf"{_PEM_BEGIN}{_PEM_BODY}*?{_PEM_END}|{_PEM_BEGIN}{_PEM_BODY}*",
          prefilter=r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY", priority=STRUCTURED,
          normalize=pem_body),
    _rule("age-secret-key", "private_key",
          r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    # JWTs, then Authorization header values
    _rule("jwt", "jwt", _L + r"ey[A-Za-z0-9_-]{15,}\.ey[A-Za-z0-9_-]{15,}\.[A-Za-z0-9_-]*",
          priority=STRUCTURED, check=jwt),
    _rule("bearer-token", "bearer",
          r"(?i:(?<![A-Za-z0-9_])bearer)[ \t]+(?P<s>[A-Za-z0-9._~+/=-]{16,})(?![A-Za-z0-9._~+/=-])",
          priority=STRUCTURED, min_entropy=3.0, check=token_like),
    _rule("basic-auth", "bearer",
          r"(?i:(?<![A-Za-z0-9_])basic)[ \t]+(?P<s>[A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])",
          priority=STRUCTURED, check=basic_auth),
    # connection strings
    _rule("url-credentials", "connection_string",
          r"(?i:[a-z][a-z0-9+.-]{0,30})://[^\s:/@\"'\\]{0,128}:(?P<s>[^\s/\"'\\]{1,256})"
          r"@(?=[^\s/@\"'\\])", prefilter=r"://[^\s:/@]*:[^\s/@]+@", priority=STRUCTURED,
          check=lambda v: not placeholder(v)),
    _rule("connection-string-password", "connection_string",
          r"(?i:server|host|data source|address|database|initial catalog|uid|user id|username)"
          r"[ \t]*=[^;\"'\\\r\n]{0,256};[^\"'\\\r\n]{0,512}?(?<![A-Za-z])(?i:password|pwd)"
          r"[ \t]*=[ \t]*(?P<s>[^;\"'\\\r\n]{1,256})", priority=STRUCTURED,
          check=lambda v: not placeholder(v.strip())),
    _rule("azure-storage-key", "connection_string",
          r"(?i:AccountKey|SharedAccessKey)=(?P<s>[A-Za-z0-9+/]{20,}={0,2})",
          priority=STRUCTURED),
    _rule("sas-signature", "connection_string",
          r"[?&]sig=(?P<s>[A-Za-z0-9%+/]{30,}(?:%3D|=){0,2})", priority=STRUCTURED),
    # passwords and secrets in assignments
    _rule("password-assignment", "password", _PW_KEY + _PROSE_ASSIGN + _PW_VALUE,
          priority=GENERIC, check=password_like),
    _rule("generic-secret-assignment", "password",
          _SECRET_KEY + _ASSIGN + r"(?P<s>[\w.=+/~-]{12,200})" + _END,
          priority=GENERIC, min_entropy=3.5, check=token_like),
    # payment cards (Luhn), then optional personal data
    _rule("payment-card", "payment_card", _CARD,
          prefilter=r"[2-6](?:[ -]?[0-9]){12,18}", priority=STRUCTURED, check=payment_card,
          normalize=card_digits),
    _rule("email", "email",
          r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*"
          r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
          prefilter=r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2}", priority=PII),
    _rule("phone", "phone",
          r"(?<![\w+.-])(?:\+[1-9]\d{7,14}|\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3,4}"
          r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4})(?![\w.-]?\d)",
          prefilter=r"\+[1-9]\d{7}|\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3}|\(\d{3}\) ?\d{3}[ .-]\d{4}",
          priority=PII, check=phone),
)

# Attribute keys whose whole string value is a secret (`db.password`, a captured
# `http.request.header.authorization`), matched on the key's end.
SENSITIVE_KEY = re.compile(
    r"(?i)(?:^|[._-])(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key|(?:auth|access|refresh|id|session|bearer)?"
    r"[_-]?token|credentials?|authorization|proxy[_-]?authorization|cookie|set[_-]cookie)$",
    re.ASCII)
# Its prefilter sees the key in protobuf bytes followed by the value's tag (0x12): every SDK
# writes KeyValue.key before .value; a key-last encoding is still scanned by the text rules.
SENSITIVE_KEY_PREFILTER = (r"(?i)(?:passw(?:or)?d|pwd|passphrase|secret|api[_-]?key|apikey"
                           r"|access[_-]?key|secret[_-]?key|private[_-]?key|token|credentials?|authorization"
                           r"|cookie)\x12")
SENSITIVE_KEY_RULE = "sensitive-key"
SENSITIVE_KEY_CLASS = "password"

BUILTIN_NAMES = frozenset(r.name for r in BUILTIN) | {SENSITIVE_KEY_RULE}
