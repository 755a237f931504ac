"""The base of every settings model: strict pydantic v2, unknown keys refused, errors that name
the dotted key and what is allowed.

Why strict: TOML and JSON already carry types, so ``true`` where an integer belongs, ``"0.5"``
where a number belongs or a float where a count belongs is a mistake to report, never a value to
coerce. Why one error format: a user fixing a file needs the key's full path
(``finetune.stages[0].lr[1]``), the value found and what would be accepted, whichever model the
key lives in.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar, Mapping, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from ..errors import ConfigError


class KeyedValueError(ValueError):
    """A validator's complaint about ``key`` (relative to the model that raises it)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("finetune", "stages", 0, "lr")`` -> ``"finetune.stages[0].lr"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _field_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside an annotation (``X``, ``X | None``, ``tuple[X, ...]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _field_model(arg)
        if found is not None:
            return found
    return None


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the key at ``loc`` (for listing the keys allowed beside it)."""
    current: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(str(part))
        current = _field_model(info.annotation) if info is not None else None
    return current


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "bool_type": "true/false",
    "string_type": "a string",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "list_type": "a list",
    "tuple_type": "a list",
    "int_from_float": "an integer",
}
_BOUND_WORDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _describe_error(cls: type[BaseModel], err: Mapping[str, Any], prefix: str) -> str:
    loc = tuple(err["loc"])
    kind, value = err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    exc = ctx.get("error")
    if isinstance(exc, KeyedValueError):
        key = ".".join(p for p in (prefix, dotted(loc)) if p)
        if exc.key:
            key += exc.key if exc.key.startswith("[") or not key else "." + exc.key
        return f"config key {key!r}: {exc.message}"
    key = ".".join(p for p in (prefix, dotted(loc)) if p)
    if kind == "extra_forbidden":
        holder = _model_at(cls, loc[:-1])
        allowed = ", ".join(sorted(holder.model_fields)) if holder is not None else "?"
        where = dotted(loc[:-1]) if loc[:-1] else prefix
        return f"unknown config key {key!r}; allowed keys{' in ' + repr(where) if where else ''}: {allowed}"
    if kind == "missing":
        return f"config key {key!r} is required"
    if kind in ("literal_error", "enum"):
        allowed = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"config key {key!r}: {value!r} is not allowed; allowed values: {allowed}"
    if kind in _BOUND_WORDS:
        name, word = _BOUND_WORDS[kind]
        bound = ctx.get(name)
        shown = f"{bound:g}" if isinstance(bound, float) else bound
        return f"config key {key!r}: must be {word} {shown}, got {value!r}"
    if kind == "finite_number":
        return f"config key {key!r}: must be a finite number, got {value!r}"
    if kind in _TYPE_WORDS:
        return f"config key {key!r}: expected {_TYPE_WORDS[kind]}, got {value!r}"
    if kind == "value_error" and exc is not None:
        return f"config key {key!r}: {exc}"
    return f"config key {key!r}: {err.get('msg')}, got {value!r}"


def config_error(cls: type[BaseModel], exc: ValidationError, prefix: str = "") -> ConfigError:
    """One :class:`ConfigError` for a pydantic ValidationError: the first problem, fully named,
    and how many more there are (fixing one at a time is how people read such messages)."""
    # an unknown key first: a misspelt key is usually also the "missing" one, and its name is the clue
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = _describe_error(cls, errors[0], prefix)
    more = len(errors) - 1
    return ConfigError(first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""))


class Settings(BaseModel):
    """Strict, frozen, unknown keys refused; ``from_dict`` / ``to_dict`` / direct construction all
    validate and raise :class:`ConfigError`."""

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=True
    )  # a field's docstring is its schema description
    #: how the model's keys are named in messages when it is validated on its own ("finetune")
    SECTION: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        if not isinstance(data, Mapping):
            where = repr(cls.SECTION) if cls.SECTION else "the config"
            raise ConfigError(f"config section {where}: expected a table, got {data!r}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise config_error(cls, exc, cls.SECTION) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples as lists), every default filled in."""
        return self.model_dump(mode="json")

    def explicit(self) -> dict[str, Any]:
        """Only the keys that were given (not defaults), nested: what a user wrote."""
        return self.model_dump(mode="json", exclude_unset=True)


class TopSettings(Settings):
    """A document's root model (never nested): direct construction, ``RunConfig(epochs=0)``, fails
    like a bad file. (Only roots: pydantic calls a custom ``__init__`` for nested models too, which
    would lose the nested key's path.)"""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(type(self), exc, self.SECTION) from None


def non_default(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (a model's ``to_dict()``) without the keys at their default value, recursing into
    nested settings: the canonical form of what a configuration *chose*. A key added to the
    settings later, with a default that keeps the old behaviour, leaves this form unchanged."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        value = data[name]
        sub = _field_model(info.annotation)
        if sub is not None and isinstance(value, Mapping):
            nested = non_default(sub, value)
            if nested or info.is_required():
                out[name] = nested
            continue
        if info.is_required():
            out[name] = value
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        elif isinstance(default, tuple):
            default = list(default)
        if value != default:
            out[name] = value
    return out


def _listish_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: A tuple in Python, a list in TOML/JSON: strict mode would refuse the list.
Listed = BeforeValidator(_listish_to_tuple)

_Item = TypeVar("_Item")
#: ``ListedTuple[item]``: ``tuple[item, ...]`` that also accepts a TOML/JSON list (a type alias, so
#: that type checkers read the field's type).
ListedTuple = Annotated[tuple[_Item, ...], Listed]


def _sized(n: int) -> BeforeValidator:
    """:data:`Listed` that also refuses a list of another length than ``n``, saying so."""

    def sized(value: Any) -> Any:
        value = _listish_to_tuple(value)
        if isinstance(value, tuple) and len(value) != n:
            raise ValueError(f"expected a list of {n} values, got {list(value)!r}")
        return value

    return BeforeValidator(sized)


#: ``ListedPair[item]``: ``tuple[item, item]`` from a TOML/JSON list of two.
ListedPair = Annotated[tuple[_Item, _Item], _sized(2)]


def is_plain(value: Any) -> bool:
    """JSON-representable (tables of lists of numbers/strings/bools/null)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


__all__ = [
    "KeyedValueError",
    "Listed",
    "ListedPair",
    "ListedTuple",
    "Settings",
    "TopSettings",
    "non_default",
    "config_error",
    "dotted",
    "is_plain",
]
