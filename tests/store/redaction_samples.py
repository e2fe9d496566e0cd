"""Fake secrets of realistic shape (random, seeded: the repository holds none verbatim) and a
clean corpus of realistic prompt / response texts, shared by the redaction tests and
benchmarks/redact.py.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
UPPER32 = string.ascii_uppercase + "234567"
HEX = "0123456789abcdef"
POD = "bcdfghjklmnpqrstvwxz2456789"


class Fakes:
    """Valid-looking secrets; the same seed gives the same secrets."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def aws_key_id(self) -> str:
        return "AKIA" + self.s(UPPER32, 16)

    def aws_secret(self) -> str:
        return self.s(B64, 40)

    def gcp_api_key(self) -> str:
        return "AIza" + self.s(URLSAFE, 35)

    def github_pat(self) -> str:
        return "ghp_" + self.s(ALNUM, 36)

    def github_fine_grained(self) -> str:
        return "github_pat_" + self.s(ALNUM, 22) + "_" + self.s(ALNUM, 59)

    def gitlab_pat(self) -> str:
        return "glpat-" + self.s(URLSAFE, 20)

    def slack_bot(self) -> str:
        return f"xoxb-{self.s(string.digits, 11)}-{self.s(string.digits, 13)}-{self.s(ALNUM, 24)}"

    def stripe_live(self) -> str:
        return "sk_live_" + self.s(ALNUM, 24)

    def openai_project(self) -> str:
        return "sk-proj-" + self.s(URLSAFE, 74) + "T3BlbkFJ" + self.s(URLSAFE, 74)

    def anthropic(self) -> str:
        return "sk-ant-api03-" + self.s(URLSAFE, 93) + "AA"

    def huggingface(self) -> str:
        return "hf_" + self.s(string.ascii_letters, 34)

    def sendgrid(self) -> str:
        return f"SG.{self.s(URLSAFE, 22)}.{self.s(URLSAFE, 43)}"

    def npm(self) -> str:
        return "npm_" + self.s(ALNUM, 36)

    def pem(self, label: str = "RSA PRIVATE KEY", lines: int = 12) -> str:
        body = "\n".join(self.s(B64, 64) for _ in range(lines))
        return f"-----BEGIN {label}-----\n{body}\n{self.s(B64, 20)}==\n-----END {label}-----"

    def jwt(self) -> str:
        def part(obj: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
        header = part({"alg": "HS256", "typ": "JWT"})
        payload = part({"sub": f"user-{self.rng.randint(1, 99999)}", "iat": 1717286400,
                        "scope": "orders:write"})
        return f"{header}.{payload}.{self.s(URLSAFE, 43)}"

    def password(self) -> str:
        return self.s(string.ascii_letters, 6) + self.s(string.digits, 3) + self.s("!@#%&*", 1)

    def card(self, brand: str, sep: str = "") -> str:
        prefix, length = {"visa": ("4", 16), "visa13": ("4", 13), "discover": ("6011", 16),
                          "mastercard": ("5" + str(self.rng.randint(1, 5)), 16),
                          "amex": ("3" + self.rng.choice("47"), 15)}[brand]
        body = prefix + self.s(string.digits, length - len(prefix) - 1)
        digits = body + str(luhn_check_digit(body))
        if not sep:
            return digits
        groups = (4, 6, 5) if length == 15 else (4, 4, 4, 4) if length == 16 else (length,)
        out, i = [], 0
        for g in groups:
            out.append(digits[i:i + g])
            i += g
        return sep.join(out)


def luhn_check_digit(body: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return (10 - total % 10) % 10


def break_luhn(card: str) -> str:
    last = int(card[-1])
    return card[:-1] + str((last + 1) % 10)


def planted(f: Fakes) -> list[tuple[str, str, str]]:
    """(rule, text holding the secret, the secret): one or more per rule class."""
    pw = f.password()
    jwt = f.jwt()
    items = [
        ("aws-access-key-id", "export AWS_ACCESS_KEY_ID={}", f.aws_key_id()),
        ("aws-secret-access-key", "aws_secret_access_key = {}", f.aws_secret()),
        ("gcp-api-key", "https://maps.googleapis.com/maps/api/geocode/json?key={}",
         f.gcp_api_key()),
        ("github-pat", "git clone https://x:{}@github.com/acme/app", f.github_pat()),
        ("github-fine-grained-pat", "GITHUB_TOKEN={}", f.github_fine_grained()),
        ("gitlab-pat", "use the token {} for the registry", f.gitlab_pat()),
        ("slack-token", "SLACK_BOT_TOKEN: {}", f.slack_bot()),
        ("stripe-key", "stripe.api_key = '{}'", f.stripe_live()),
        ("openai-api-key", "OPENAI_API_KEY={}", f.openai_project()),
        ("anthropic-api-key", "client = Anthropic(api_key=\"{}\")", f.anthropic()),
        ("huggingface-token", "huggingface-cli login --token {}", f.huggingface()),
        ("sendgrid-api-token", "SENDGRID_API_KEY={}", f.sendgrid()),
        ("npm-access-token", "//registry.npmjs.org/:_authToken={}", f.npm()),
        ("private-key", "here is the deploy key:\n{}\nplease add it", f.pem()),
        ("private-key", "{}", f.pem("EC PRIVATE KEY", 3)),
        ("private-key", "{}", f.pem("OPENSSH PRIVATE KEY", 6)),
        ("jwt", "the session cookie was {} yesterday", jwt),
        ("bearer-token", "curl -H 'Authorization: Bearer {}' https://api.acme.dev/v1/orders",
         f.s(ALNUM, 40)),
        ("url-credentials", "DATABASE_URL=postgres://orders_app:{}@db.prod.internal:5432/orders",
         pw),
        ("password-assignment", 'db:\n  password = "{}"\n  pool: 5', f.password()),
        ("payment-card", "please charge card {} for the renewal", f.card("visa", " ")),
    ]
    return [(rule, text.format(secret), secret) for rule, text, secret in items]


# -- the clean corpus: what prompts, retrieved documents and answers look like ---------------

_WORDS = tuple(" ".join((
    "the deploy failed because the migration locked the orders table for too long so we",
    "rolled back and retried with a smaller batch size after checking the replica lag",
    "dashboard and the runbook for the checkout service which owns the payment flow customer",
    "support ticket summary refund request invoice shipment delayed warehouse inventory",
    "forecast model latency budget error rate alert page on call engineer review approve",
    "merge pull request branch release tag changelog config feature flag rollout percent",
    "canary region cluster node pod restart memory limit token usage prompt response tool",
    "call retrieval document score policy allow deny password reset email link expired",
    "account locked two factor authentication secret manager rotation api key credentials",
    "vault access granted denied audit log",
)).split())


class Corpus:
    """Realistic clean texts: prose with ids, code, configs, logs, tables, tool JSON."""

    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.f = Fakes(seed + 1)

    def words(self, n: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(n))

    def sentence(self) -> str:
        r = self.rng
        extras = [
            lambda: f"order ORD-{r.randint(2023, 2026)}-{r.randint(0, 999999):06d}",
            lambda: f"ticket #{r.randint(1000, 99999)}",
            lambda: f"invoice INV{r.randint(10**7, 10**8 - 1)}",
            lambda: str(uuid.UUID(int=r.getrandbits(128), version=4)),
            lambda: f"commit {r.getrandbits(160):040x}",
            lambda: f"sha256:{r.getrandbits(256):064x}",
            lambda: f"${r.randint(1, 9999)}.{r.randint(0, 99):02d}",
            lambda: f"{r.randint(2023, 2026)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            lambda: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d} UTC",
            lambda: f"v{r.randint(0, 9)}.{r.randint(0, 40)}.{r.randint(0, 20)}",
            lambda: f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            lambda: f"tracking 1Z{self.f.s(string.ascii_uppercase + string.digits, 16)}",
            lambda: f"account {r.randint(10**9, 10**12)}",
            lambda: f"ref {r.randint(10**15, 10**16 - 1)}",  # 16-digit internal ids
            lambda: f"+1 {r.randint(200, 999)} 555 {r.randint(0, 9999):04d}",
            lambda: f"epoch {r.randint(1_600_000_000_000, 1_800_000_000_000)}",
            lambda: f"{r.randint(1, 99)}% of {r.randint(100, 100000)} requests",
            lambda: f"pod checkout-api-{self.f.s(HEX, 9)}-{self.f.s(POD, 5)}",
            lambda: f"arn:aws:iam::{r.randint(10**11, 10**12 - 1)}:role/deploy",
            lambda: f"trace {r.getrandbits(128):032x}",
            lambda: f"user{r.randint(1, 9999)}@example.com",
            lambda: f"ISBN 978-{r.randint(0, 9)}-{r.randint(100, 999)}-"
                    f"{r.randint(10000, 99999)}-{r.randint(0, 9)}",
        ]
        parts = [self.words(r.randint(4, 14))]
        for _ in range(r.randint(0, 2)):
            parts.append(r.choice(extras)())
            parts.append(self.words(r.randint(2, 8)))
        s = " ".join(parts)
        return s[0].upper() + s[1:] + r.choice(".?!")

    def prose(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(1, 8)))

    def code(self) -> str:
        r = self.rng
        snippets = [
            'import os\nAPI_KEY = os.environ["OPENAI_API_KEY"]\nclient = OpenAI(api_key=API_KEY)',
            "def login(user: str, password: str) -> bool:\n    return check_hash(user, password)",
            'password = getpass.getpass("Password: ")\ntoken = auth.get_token(user, password)',
            "const secret = process.env.JWT_SECRET;\nconst token = jwt.sign(payload, secret);",
            "headers = {'Authorization': f'Bearer {token}'}\n"
            "resp = requests.get(url, headers=headers)",
            'curl -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com/user',
            "SELECT id, total, status FROM orders WHERE customer_id = $1\n"
            "  AND created_at > now() - interval '7 days';",
            "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n"
            "        name: db-credentials\n        key: password",
            "DATABASE_URL=postgres://localhost:5432/orders_dev\nREDIS_URL=redis://cache:6379/0",
            "password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt())",
            "if token_count > max_tokens:\n    raise ValueError('prompt too long')",
            "func (s *Server) Auth(ctx context.Context, r *pb.AuthRequest) (*pb.Token, error) {",
            'secret_name = "prod/checkout/stripe"\nclient.get_secret_value(SecretId=secret_name)',
            "api_key: ${STRIPE_API_KEY}\nwebhook_secret: ${STRIPE_WEBHOOK_SECRET}",
            f"image: registry.acme.dev/checkout@sha256:{r.getrandbits(256):064x}",
            f"session_id = '{uuid.UUID(int=r.getrandbits(128), version=4)}'",
            f"cache_key = 'orders:{r.randint(1, 10**6)}:v{r.randint(1, 9)}'",
            "auth_token = request.headers.get('X-Auth-Token')",
            "export AWS_PROFILE=prod\naws s3 cp s3://acme-backups/db.sql.gz .",
            f"etag: \"{r.getrandbits(128):032x}\"",
            f"checksum = '{r.getrandbits(128):032x}'  # md5 of the artifact",
            "password: <your password here>\nusername: admin",
            "reset_token = secrets.token_urlsafe(32)",
            f"data:image/png;base64,{base64.b64encode(r.randbytes(48)).decode()}",
            "access_key_id: !Ref AccessKey\nsecret_access_key: !GetAtt AccessKey.SecretAccessKey",
            "kubectl create secret generic api-credentials --from-env-file=.env",
        ]
        return "\n".join(r.choice(snippets) for _ in range(r.randint(1, 3)))

    def log_lines(self) -> str:
        r = self.rng
        lines = []
        for _ in range(r.randint(2, 8)):
            ts = (f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
                  f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}Z")
            lines.append(ts + r.choice([
                f" INFO request_id={uuid.UUID(int=r.getrandbits(128))} status=200 "
                f"duration_ms={r.randint(1, 900)}",
                f" WARN token refresh failed for client_id={r.randint(1000, 9999)} "
                f"retry={r.randint(1, 5)}",
                f' ERROR password authentication failed for user "app" (pid {r.randint(9, 999)})',
                f" INFO GET /api/v1/orders/{r.randint(10**5, 10**7)} 200 {r.randint(100, 90000)}B",
                f" DEBUG span_id={r.getrandbits(64):016x} trace_id={r.getrandbits(128):032x}",
            ]))
        return "\n".join(lines)

    def table(self) -> str:
        r = self.rng
        rows = ["| order | amount | date | status |", "|---|---|---|---|"]
        for _ in range(r.randint(2, 6)):
            status = r.choice(["paid", "refunded", "pending"])
            price = f"${r.randint(5, 5000)}.{r.randint(0, 99):02d}"
            rows.append(f"| {r.randint(10**6, 10**7)} | {price} | "
                        f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} | {status} |")
        return "\n".join(rows)

    def tool_json(self) -> str:
        r = self.rng
        return json.dumps({"tool": r.choice(["search_orders", "get_invoice", "create_ticket"]),
                           "arguments": {"customer_id": f"cus_{self.f.s(ALNUM, 14)}",
                                         "limit": r.randint(1, 50), "query": self.words(5)},
                           "result": {"items": [self.sentence() for _ in range(r.randint(1, 3))],
                                      "next_cursor": base64.b64encode(r.randbytes(18)).decode()}})

    def text(self) -> str:
        kind: Callable[[], str] = self.rng.choices(
            [self.prose, self.code, self.log_lines, self.table, self.tool_json],
            weights=[50, 20, 12, 8, 10])[0]
        return kind()

    def texts(self, n: int) -> list[str]:
        return [self.text() for _ in range(n)]


# -- a leak story: one key pasted into three traces ---------------------------------------------

LEAK_TRACES = ("1e" * 16, "2e" * 16, "3e" * 16)  # the traces the GitHub token appears in
OTHER_TRACE = "4e" * 16  # an AWS key, and nothing else


def leak_story(seed: int = 3) -> tuple[dict, str, str]:
    """An OTLP/JSON request (as `aitrail ingest` reads it) of four traces: a GitHub token
    pasted into a chat prompt, then used in a `git push` URL by a tool, then dumped with the
    environment by an agent; and an AWS key in a fourth trace. Returns (document, token,
    AWS key)."""
    f = Fakes(seed)
    token, aws = f.github_pat(), f.aws_key_id()

    def span(trace: str, n: int, name: str, attrs: dict[str, str]) -> dict:
        start = 1_763_600_000_000_000_000 + int(trace[:2], 16) * 10**12 + n * 10**9
        return {"traceId": trace, "spanId": f"{int(trace[:2], 16):02x}{n:014x}", "name": name,
                "kind": 3, "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 800_000_000),
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}

    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content":
                            f"CI fails with 403, my token is {token} - what is wrong?"}]}])
    spans = [
        span(LEAK_TRACES[0], 1, "chat gpt-4o", {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": messages, "enduser.id": "dev-ana"}),
        span(LEAK_TRACES[1], 1, "execute_tool git_push", {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "git_push",
            "gen_ai.tool.call.arguments": json.dumps(
                {"remote": f"https://ci-bot:{token}@github.com/acme/app.git"}),
            "enduser.id": "dev-ana"}),
        span(LEAK_TRACES[2], 1, "invoke_agent env-doctor", {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "env-doctor",
            "env.dump": f"HOME=/home/ci\nGITHUB_TOKEN={token}\nLANG=C.UTF-8"}),
        span(OTHER_TRACE, 1, "chat gpt-4o", {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                {"type": "text", "content": f"is {aws} an access key?"}]}])}),
    ]
    doc = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "devhelper-bot"}}]},
        "scopeSpans": [{"scope": {"name": "devhelper"}, "spans": spans}]}]}
    return doc, token, aws
