"""Typed reads of document values, each failing with the key path and line of the bad value.

Values arrive as YAML read them (the environment's too: distribution reads those as YAML), so a
flag is a YAML boolean or a string; strings are accepted where distribution's S3 driver accepts them
(Go's ``strconv.ParseBool``).
Values quoted in messages are shortened, and callers never pass secret values here.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from agent.errors import InvalidNameError
from agent.names import endpoint_from_url, query_values_masked, registry_from_url, without_userinfo
from agent.sources.document import Document, Path

# strconv.ParseBool, which distribution's S3 driver uses for string parameters.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def mapping(doc: Document, path: Path, value: object) -> Mapping[str, object]:
    """A mapping with string keys; ``None`` (an empty YAML key) is an empty mapping."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise doc.error(path, f"must be a mapping, got {_kind(value)}")
    return {str(key): item for key, item in value.items()}


def sequence(doc: Document, path: Path, value: object) -> list[object]:
    """A list; ``None`` is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise doc.error(path, f"must be a list, got {_kind(value)}")
    return value


def string(doc: Document, path: Path, value: object) -> str | None:
    """A string (numbers are accepted as their text, as distribution does); empty means unset."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise doc.error(path, f"must be a string, got {_kind(value)}")
    text = str(value).strip()
    return text or None


def url(doc: Document, path: Path, value: object, *, registry: bool = False) -> str | None:
    """An http(s) URL or bare ``host[:port]``: a storage endpoint, or the registry's address where
    ``registry``. Its address is checked here, so a bad one is named by its key and line, and any
    ``user:password@`` in it is dropped: never kept, shown or copied to a host. Nor are its query's
    values and fragment (a presigned ``X-Amz-Security-Token=...``): engines need only its address.
    """
    text = string(doc, path, value)
    if text is None:
        return None
    text = without_query_values(text)
    try:
        if registry:
            registry_from_url(text)
        else:
            endpoint_from_url(text)
    except InvalidNameError as exc:
        raise doc.error(path, exc.message) from None
    return without_userinfo(text)


# What stands for a URL's hidden query value or fragment.
_HIDDEN = "***"


def without_query_values(text: str) -> str:
    """``text`` with its query's values and its fragment shown as ``***``, a value's name kept to say
    what was there. The query starts at the first '?' after any ``user:password@``, found as
    names.without_userinfo finds it (a '?' in a password is not one), which is left for it to drop.

    >>> without_query_values("https://s3.example.com/?X-Amz-Security-Token=T0K&x-id=1#k")
    'https://s3.example.com/?X-Amz-Security-Token=***&x-id=***#***'
    >>> without_query_values("https://AK:12?34@s3.example.com:9000")
    'https://AK:12?34@s3.example.com:9000'
    """
    scheme, sep, _ = text.partition("://")
    address = without_userinfo(text)[len(scheme + sep) if sep else 0 :].removeprefix("...@")
    # without_userinfo cut only the userinfo: the text still ends with the address it kept.
    return text[: len(text) - len(address)] + query_values_masked(address, _HIDDEN)


def boolean(doc: Document, path: Path, value: object, default: bool) -> bool:
    """``true``/``false`` as a YAML boolean or a string; ``None`` or ``""`` gives ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() in _TRUE:
        return True
    if isinstance(value, str) and value.strip() in _FALSE:
        return False
    raise doc.error(path, f"must be true or false, got {_show(value)}")


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return _show(value)


def _show(value: object) -> str:
    # As the document wrote it (a YAML date or !!binary is not a Python repr to the reader).
    if isinstance(value, datetime.date):
        text = f"the date {value.isoformat()}"
    elif isinstance(value, bytes):
        text = f"{len(value)} bytes of !!binary"
    else:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
