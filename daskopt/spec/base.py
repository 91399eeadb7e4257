"""What every table of a study file shares: frozen strict models, unknown-key checks, key-precise errors.

Why a base class: every table must reject unknown keys with a "did you mean" hint, and every check written
here must point at the exact TOML key it is about (``space.lr.low``), not at the enclosing table. Pydantic
reports the location of a failing field by itself; :func:`key_error` extends that to checks that span
several keys, because a ``ValidationError`` raised inside a validator keeps its location, nested under
the validator's own.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

#: The pydantic error type of every check written in this package; its message is complete as it is.
ERROR_TYPE = "spec"


def invalid(message: str) -> PydanticCustomError:
    """An error about the value being validated; ``message`` says what was received and what was expected."""
    return PydanticCustomError(ERROR_TYPE, "{reason}", {"reason": message})


def key_error(loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """An error about the key ``loc`` inside the table being validated (``()`` for the table itself)."""
    details = InitErrorDetails(type=invalid(message), loc=loc, input=value)
    return ValidationError.from_exception_data(ERROR_TYPE, [details])


def show(value: Any, limit: int = 60) -> str:
    """``value`` as it would look in the file (``true``, ``"text"``, ``[1, 2]``), cut to ``limit`` characters.

    JSON is close enough to TOML for scalars and arrays, and reads better than Python's ``repr``.
    """
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def hint(word: str, valid: Iterable[str], what: str) -> str:
    """``did you mean 'low'? valid keys: type, low, high``: the closest valid word, then all of them."""
    names = list(valid)
    listing = f"valid {what}: {', '.join(names)}" if names else f"there are no valid {what}"
    close = closest(word, names)
    return f"did you mean {close!r}? {listing}" if close else listing


def closest(word: str, valid: Iterable[str]) -> str | None:
    """The valid word ``word`` is most likely a typo of, if any is close enough (case does not count)."""
    by_folded = {name.casefold(): name for name in valid}
    matches = difflib.get_close_matches(word.casefold(), list(by_folded), n=1)
    return by_folded[matches[0]] if matches else None


def base_dir(info: ValidationInfo) -> Path:
    """The folder relative paths are resolved against: the study file's folder, passed as validation context."""
    context = info.context if isinstance(info.context, dict) else {}
    return Path(context.get("base_dir", Path.cwd()))


class Section(BaseModel):
    """A table of the study file: immutable once loaded, strict about TOML types, closed to unknown keys.

    ``strict`` because TOML values are already typed: ``n_trials = "5"`` is a mistake to report, not a
    string to coerce.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: how an unknown key of this table is called in messages ("key", or "section" for the whole file)
    key_noun: ClassVar[str] = "key"

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        """Reject the first unknown key with a suggestion; pydantic's own message names no valid key."""
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    message = f"unknown {cls.key_noun} {key!r}; {hint(key, cls.model_fields, cls.key_noun + 's')}"
                    raise key_error((key,), message, data[key])
        return data
