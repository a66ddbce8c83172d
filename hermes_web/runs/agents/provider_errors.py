"""What went wrong with a provider, said so a person can act on it. Pure functions.

Providers explain their errors in a JSON body of one of a few shapes; the explanation is
extracted and placed in a sentence that names the likely fix. A raw body never reaches the
message: a JSON dump, an HTML error page or a megabyte of text helps nobody. Messages are
redacted where the run writes them, like every record.
"""

import html
import json
import re

# How much of the provider's own explanation is kept.
MAX_PROVIDER_MESSAGE_CHARS = 500
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


class ProviderError(RuntimeError):
    """The provider failed or refused; the message says what to do about it."""


class StreamEndedEarly(ProviderError):
    """The provider's stream stopped before it said the answer was complete."""


def provider_message(body: bytes):
    """The provider's own explanation in an error body, or None when it gives none."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if document is not None:
        found = _message_in(document)
        return _shorten(found) if found else None
    if text[:1] == "<":
        title = _TITLE.search(body)
        if title:
            return _shorten(html.unescape(title.group(1).decode("utf-8", "replace"))) + " (an HTML page)"
        return "an HTML page, not an API answer"
    return _shorten(text)


def _message_in(document):
    """The explanation in the JSON shapes providers use."""
    if isinstance(document, str):
        return document
    if isinstance(document, list) and document:
        return _message_in(document[0])
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    if isinstance(error, str) and error:
        return error  # Ollama: {"error": "model 'x' not found"}
    if isinstance(error, dict):
        message = _message_in(error)
        raw = (error.get("metadata") or {}).get("raw") if isinstance(error.get("metadata"), dict) else None
        if isinstance(raw, str) and raw and raw not in (message or ""):
            message = f"{message}: {raw}" if message else raw  # OpenRouter: the upstream provider's words
        if message:
            return message
    for key in ("message", "detail", "msg", "error_message", "title"):
        value = document.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, (list, dict)):
            found = _message_in(value)  # FastAPI: {"detail": [{"msg": "..."}]}
            if found:
                return found
    return None


def _shorten(text: str) -> str:
    text = _SPACES.sub(" ", text).strip()
    if len(text) > MAX_PROVIDER_MESSAGE_CHARS:
        text = text[: MAX_PROVIDER_MESSAGE_CHARS - 1] + "…"
    return text


def status_error(status: int, body: bytes, *, url: str, model: str, key_source: str, retry_after=None) -> ProviderError:
    """The error for an HTTP error answer."""
    said = provider_message(body)
    quoted = f": {said}" if said else ""
    if not said or said[-1:] not in ".!?)":
        quoted += "."
    lowered = (said or "").lower()
    if status in (401, 403):
        where = key_source or "the API key"
        return ProviderError(f"the provider refused the credentials (HTTP {status}){quoted} Check {where}.")
    if status == 404:
        return ProviderError(
            f"the provider answered HTTP 404 for {url}{quoted} Check the model name ({model!r}) and that the "
            "base URL is where the API starts (it usually ends in /v1)."
        )
    if status == 429:
        wait = f" (it asks to wait {retry_after} s)" if retry_after else ""
        return ProviderError(
            f"the provider is rate-limiting requests or the account is out of credit (HTTP 429){quoted} "
            f"Wait a moment{wait} and try again, or check the account's quota."
        )
    if status == 413:
        return ProviderError(f"the request is too large for the provider (HTTP 413){quoted} "
                             "Start a new chat, or send smaller attachments.")
    if status in (400, 422):
        hint = ""
        if "tool" in lowered or "function" in lowered:
            hint = " If this model cannot call tools, turn tools off for this agent (tools = false)."
        elif "image" in lowered or "vision" in lowered or "multimodal" in lowered:
            hint = " If this model cannot see images, turn vision off for this agent (vision = false)."
        elif "context" in lowered or "too long" in lowered or ("maximum" in lowered and "token" in lowered):
            hint = " The conversation may be too long for this model: start a new chat."
        return ProviderError(f"the provider refused the request (HTTP {status}){quoted}{hint}")
    if status in (408, 504, 524):
        return ProviderError(f"the provider timed out (HTTP {status}){quoted} Try again in a moment.")
    if status >= 500:
        return ProviderError(f"the provider failed (HTTP {status}){quoted} Try again in a moment.")
    return ProviderError(f"the provider answered HTTP {status}{quoted}")


def stream_error(error_object) -> ProviderError:
    """The error for an ``error`` object sent in the middle of a stream."""
    said = _message_in({"error": error_object}) if error_object else None
    return ProviderError(f"the provider reported an error while answering: {_shorten(said) if said else 'no details given'}")
