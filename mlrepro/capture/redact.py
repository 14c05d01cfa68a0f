"""Redaction of secrets: pure functions, applied to everything captured before it is stored.

Three nets, all applied: names that look secret (`*_PASSWORD`, `*TOKEN*`, ...),
credentials inside URLs (`https://user:token@host`), and values that look like
well-known credential formats (AWS access key ids, GitHub/Slack tokens, private keys).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

REDACTED = "***"

_SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"credential|auth(?!or)|session[_-]?key|signature|cookie|dsn|pwd)", re.IGNORECASE)
_NOT_SECRET_NAME = re.compile(r"(^|_)(tokenizer|num_tokens|max_tokens|tokens_per)",
                              re.IGNORECASE)
# Every repetition is bounded so that a long string (a 2 MB param) cannot make a
# pattern backtrack quadratically.
_URL_CREDS = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]{0,30}://)(?P<creds>[^/@\s:]{0,256}(:[^/@\s]{0,1024})?)@")
_QUERY_PARAM = re.compile(r"(?P<key>[?&;][^=&\s?;#]{1,128})=(?P<value>[^&\s#;]+)")
_QUERY_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|signature|api[_-]?key|access[_-]?key|credential|sig\b|"
    r"x-amz-security-token|x-amz-credential)", re.IGNORECASE)
_VALUE_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b"),               # AWS access key ids
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),                      # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}\b"),
    re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}\b"),                       # GitLab
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}\b"),                   # Slack
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),                              # Hugging Face
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}\b"),                           # OpenAI-style keys
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"(?i)(aws_secret_access_key|aws_session_token)\s*[=:]\s*\S+"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-+/=]{8,}"),
]
_ARG_SECRET = re.compile(r"^--?(?P<name>[^=]+)=(?P<value>.*)$", re.S)


def is_secret_name(name: str) -> bool:
    """True for names like AWS_SECRET_ACCESS_KEY, DB_PASSWORD, HF_TOKEN, api_key."""
    name = str(name)
    if _NOT_SECRET_NAME.search(name):
        return False
    return bool(_SECRET_NAME.search(name))


def redact_url(url: str) -> str:
    """Drop user:password from a URL and secret-looking query values."""
    url = _URL_CREDS.sub(lambda m: m.group("scheme") + REDACTED + "@", url)
    return _QUERY_PARAM.sub(lambda m: m.group("key") + "=" + REDACTED
                            if _QUERY_SECRET_KEY.search(m.group("key")) else m.group(0), url)


def redact_text(text: str) -> str:
    """Scrub credentials inside any string: URLs and well-known token formats."""
    if not text:
        return text
    text = redact_url(text)
    for pattern in _VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact_value(name: str, value: Any) -> Any:
    """Redact a named value: all of it if the name looks secret, else secrets inside it."""
    if is_secret_name(name) and value not in (None, "", False, True):
        return REDACTED
    return redact(value)


def redact(value: Any) -> Any:
    """Recursively redact a JSON-like structure (dict keys decide, strings are scrubbed)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def redact_argv(argv: list[str]) -> list[str]:
    """Redact `--password x`, `--api-key=x`, `token=x` and secrets inside any argument."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        m = _ARG_SECRET.match(arg)
        if m and is_secret_name(m.group("name")):
            out.append(arg[: m.start("value")] + REDACTED)
            continue
        if arg.startswith("-") and "=" not in arg and is_secret_name(arg.lstrip("-")):
            out.append(arg)
            hide_next = True
            continue
        if "=" in arg and not arg.startswith("-"):
            key, _, _val = arg.partition("=")
            if is_secret_name(key):
                out.append(key + "=" + REDACTED)
                continue
        out.append(redact_text(arg))
    return out


def redact_environ(environ: Mapping[str, str], allow_prefixes: tuple[str, ...],
                   allow_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """The allow-listed variables only, each redacted by name and by content.

    Values that hold JSON (SM_TRAINING_ENV, TF_CONFIG, SM_HPS) are parsed and
    redacted key by key, then kept as structures.
    """
    import json

    out: dict[str, Any] = {}
    for name in sorted(environ):
        if not (name.startswith(allow_prefixes) or name in allow_names):
            continue
        value = environ[name]
        if is_secret_name(name):
            out[name] = REDACTED
            continue
        stripped = value.strip()
        if stripped[:1] in "{[":
            try:
                out[name] = redact(json.loads(stripped))
                continue
            except ValueError:
                pass
        out[name] = redact_text(value)
    return out
