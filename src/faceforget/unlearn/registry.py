"""METHOD_REGISTRY: method names -> classes; `get_method` builds a new, validated instance."""
from __future__ import annotations

from faceforget.config import format_validation_error
from faceforget.unlearn.method import MethodParams, UnlearningMethod

METHOD_REGISTRY: dict[str, type[UnlearningMethod]] = {}


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Add a method class under its `name` (duplicate names are an error)."""
    if cls.name in METHOD_REGISTRY:
        raise ValueError(f"method {cls.name!r} is already registered")
    METHOD_REGISTRY[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Sorted names of every registered method."""
    from faceforget.unlearn import methods  # noqa: F401 - the registration list

    return sorted(METHOD_REGISTRY)


def method_class(name: str) -> type[UnlearningMethod]:
    """The class registered as `name`; unknown names are a ValueError listing the valid ones."""
    names = available_methods()
    if name not in METHOD_REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(names)}")
    return METHOD_REGISTRY[name]


def get_method(name: str, params: dict | MethodParams | None = None) -> UnlearningMethod:
    """A new instance of method `name` with validated params; unknown names list the valid ones."""
    from pydantic import ValidationError

    cls = method_class(name)
    try:
        return cls(params)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, f"params of method {name!r}")) from None
