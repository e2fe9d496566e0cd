"""Redaction before anything reaches disk: secret and card detectors (hyperscan prefilter,
exact `re` confirmation), keyed fingerprints, per tenant / service policy, fail closed.

    redactor = Redactor(store_root, RedactionPolicy.from_config(config.doc, str(config.path)))
    n = redactor.redact_traces(req, tenant, raw)   # in place; raises RedactionError

See docs/redaction.md.
"""

from .engine import RedactionError, Redactor
from .keys import fingerprint, key_path, load_or_create_key
from .policy import RedactionPolicy
from .rules import BUILTIN, CLASSES, DEFAULT_CLASSES
from .walk import RESERVED_KEY

__all__ = ["BUILTIN", "CLASSES", "DEFAULT_CLASSES", "RESERVED_KEY", "RedactionError",
           "RedactionPolicy", "Redactor", "fingerprint", "key_path", "load_or_create_key"]
