"""Classes: ``@app.cls()`` turns a class into a :class:`Cls`; ``Model(param=1)`` is an
:class:`Obj`, and ``Model().method`` a function to ``.remote``, ``.spawn`` or ``.map``.

Each container of a class makes one instance, runs its ``@enter`` methods once, serves
many inputs with the same instance (its state lives between them) and runs its ``@exit``
methods when it stops. Each set of parameter values has its own pool of containers.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from rayfn._class_endpoints import endpoint_methods
from rayfn._client import get_client
from rayfn.exception import InvalidError
from rayfn.function import Function
from rayfn.options import PARAMETER_TYPES, ClassSpec, FunctionOptions, ParameterSpec
from rayfn.partial_function import Role, batching_of, check_batched_signature, role_of
from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.variants import Variant, check_params, overrides_of

__all__ = ["Cls", "Obj", "parameter", "class_spec_of", "instantiate"]

_NO_DEFAULT = object()


class NotAMethodError(InvalidError, AttributeError):
    """``Model().name`` where ``name`` is not a ``@method()``: an AttributeError too, so
    ``hasattr`` and ``getattr(obj, name, default)`` work."""


class Parameter:
    """A class parameter (``size: int = rayfn.parameter(default=1)``)."""

    def __init__(self, default: Any = _NO_DEFAULT, init: bool = True) -> None:
        if not init:
            raise InvalidError("parameter(init=False) is not supported")
        self.default = default

    def __repr__(self) -> str:
        return "parameter()" if self.default is _NO_DEFAULT else \
            f"parameter(default={self.default!r})"


def parameter(*, default: Any = _NO_DEFAULT, init: bool = True) -> Any:
    """Declare a typed class parameter (``int``, ``str``, ``bool`` or ``bytes``): each set
    of values given as ``Model(name=value)`` gets its own containers."""
    return Parameter(default, init)


def _members(user_cls: type) -> dict[str, Any]:
    """The class's attributes, base classes first, as Python resolves them."""
    found: dict[str, Any] = {}
    for klass in reversed(user_cls.__mro__[:-1]):
        found.update(vars(klass))
    return found


def _parameters(user_cls: type) -> tuple[ParameterSpec, ...]:
    try:
        hints = typing.get_type_hints(user_cls)
    except Exception:  # unresolved forward references: fall back to the raw annotations
        hints = dict(getattr(user_cls, "__annotations__", {}))
    specs = []
    for name, value in _members(user_cls).items():
        if not isinstance(value, Parameter):
            continue
        kind = hints.get(name)
        type_name = next((k for k, t in PARAMETER_TYPES.items() if kind in (t, k)), None)
        if type_name is None:
            raise InvalidError(f"{user_cls.__name__}.{name}: a parameter must be annotated "
                               f"int, str, bool or bytes, not {kind!r}")
        has_default = value.default is not _NO_DEFAULT
        specs.append(ParameterSpec(name, type_name, has_default,
                                   value.default if has_default else None))
    return tuple(specs)


def _callable_methods(user_cls: type) -> dict[str, Callable[..., Any]]:
    """The class's ``@method()`` (and ``@batched``) functions, by name."""
    found: dict[str, Callable[..., Any]] = {}
    for name, member in _members(user_cls).items():
        fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if role_of(fn) is Role.METHOD:
            if isinstance(member, (staticmethod, classmethod)):
                raise InvalidError(f"{user_cls.__name__}.{name}: a @method() must be an "
                                   "instance method")
            found[name] = fn
    return found


def class_spec_of(user_cls: type) -> tuple[ClassSpec, dict[str, Any]]:
    """The class's methods and parameters, checked; and what its methods' marks say
    about batching (a class with a ``@batched`` method has only that method, as in
    Modal)."""
    if not isinstance(user_cls, type):
        raise InvalidError(f"@app.cls() decorates classes, not {user_cls!r}")
    if "__init__" in vars(user_cls) and _parameters(user_cls):
        raise InvalidError(f"{user_cls.__name__}: a class with modal.parameter() fields "
                           "cannot define __init__; use @enter() for set-up")
    methods = _callable_methods(user_cls)
    if not methods and not endpoint_methods(user_cls):
        raise InvalidError(f"class {user_cls.__name__} has no @method() to call")
    generators = [name for name, fn in methods.items()
                  if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)]
    batched = {name: batching_of(fn) for name, fn in methods.items()
               if batching_of(fn) is not None}
    extras: dict[str, Any] = {}
    if batched:
        if len(batched) > 1:
            raise InvalidError(f"class {user_cls.__name__} can only have one @batched method")
        if len(methods) > 1:
            raise InvalidError(f"class {user_cls.__name__} with a @batched method cannot "
                               "have other methods")
        if generators:
            raise InvalidError(f"class {user_cls.__name__}: a @batched method cannot yield")
        ((name, batching),) = batched.items()
        assert batching is not None
        check_batched_signature(methods[name], f"{user_cls.__name__}.{name}")
        extras = {"max_batch_size": batching.max_batch_size, "batch_wait_ms": batching.wait_ms}
    return ClassSpec(tuple(methods), _parameters(user_cls), tuple(generators)), extras


def lifecycle_methods(user_cls: type, role: Role) -> list[str]:
    """The names of the class's ``@enter`` (or ``@exit``) methods, in definition order."""
    return [name for name, member in _members(user_cls).items() if role_of(member) is role]


def instantiate(user_cls: type, params: Mapping[str, Any]) -> Any:
    """An instance with its parameters set, as a container makes it (no enter yet)."""
    instance: Any = object.__new__(user_cls)
    for name, value in params.items():
        setattr(instance, name, value)
    if user_cls.__init__ is not object.__init__:  # type: ignore[misc]
        instance.__init__()
    return instance


class Cls:
    """A class of an app (``@app.cls()``) or a deployed one (``Cls.from_name``)."""

    def __init__(
        self,
        name: str,
        *,
        app: Any = None,
        app_name: str | None = None,
        user_cls: type | None = None,
        options: FunctionOptions | None = None,
        overrides: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        self._name = validate_name("class", name)
        self._app = app
        self._app_name = app_name
        self._user_cls = user_cls
        self._options = options  # None until looked up, for a class from_name
        self._overrides = overrides

    @classmethod
    def from_name(cls, app_name: str, name: str, *, environment_name: str | None = None
                  ) -> Cls:
        """A deployed class, looked up when first used (``NotFoundError`` then if the app
        has no class ``name``)."""
        validate_name("app", app_name)
        return cls(name, app_name=app_name)

    @property
    def name(self) -> str:
        return self._name

    @property
    def app_name(self) -> str:
        if self._app is not None:
            return str(self._app.target_name())
        assert self._app_name is not None
        return self._app_name

    def __repr__(self) -> str:
        return f"Cls({self.app_name!r}, {self._name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_cls_from_name, (self.app_name, self._name, self._overrides))

    @property
    def options(self) -> FunctionOptions:
        """The class's options as deployed (looked up once for a class from_name)."""
        if self._options is None:
            info = get_client().call(RegistryApi.function_info, self.app_name, self._name)
            options = FunctionOptions.from_dict(info.options)
            if options.cls is None:
                raise InvalidError(f"{self.app_name}.{self._name} is a function, not a class;"
                                   " use Function.from_name")
            self._options = options
        return self._options

    def hydrate(self) -> Cls:
        _ = self.options
        return self

    def _spec(self) -> ClassSpec:
        spec = self.options.cls
        assert spec is not None
        return spec

    def __call__(self, *args: Any, **params: Any) -> Obj:
        if args:
            raise InvalidError(f"{self._name}(...) takes its parameters by keyword")
        values = check_params(self._spec(), params, f"class {self._name}")
        return Obj(self, values)

    def with_options(self, **options: Any) -> Cls:
        """The same class with other resources, timeout, retries or scaling: its calls run
        in containers of their own, made with these options."""
        merged = dict(self._overrides)
        merged.update(options)
        if self._user_cls is not None:
            self.options.overridden(merged)  # checked against the real options now
        return Cls(self._name, app=self._app, app_name=self._app_name, user_cls=self._user_cls,
                   options=self._options, overrides=overrides_of(merged))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Cls:
        return self.with_options(max_inputs=max_inputs, target_inputs=target_inputs)

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Cls:
        return self.with_options(max_batch_size=max_batch_size, batch_wait_ms=wait_ms)

    def get_user_cls(self) -> type:
        if self._user_cls is None:
            raise InvalidError(f"{self!r} was looked up by name; its code is on the cluster")
        return self._user_cls

    def __getattr__(self, name: str) -> Any:
        # Model.method of a local class: the default instance's method. Anything else is
        # an AttributeError, so that probes (pickling, hasattr) never reach the cluster.
        spec = None if self._options is None else self._options.cls
        if name.startswith("_") or spec is None or name not in spec.methods:
            raise AttributeError(f"{self._name} has no attribute {name!r}; call a method "
                                 f"on an instance: {self._name}().{name}")
        return getattr(self(), name)


class Obj:
    """An instance of a class with its parameter values: ``Model(size=1)``."""

    def __init__(self, cls: Cls, params: tuple[tuple[str, Any], ...]) -> None:
        self._cls = cls
        self._params = params
        self._target = Variant(cls.name, params, cls._overrides).name()
        self._methods: dict[str, Function[..., Any]] = {}
        self._local: Any = None

    def __repr__(self) -> str:
        return f"{self._cls.name}({', '.join(f'{k}={v!r}' for k, v in self._params)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_obj_of, (self._cls, self._params))

    def __getattr__(self, name: str) -> Function[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = self._methods.get(name)
        if method is None:
            spec = self._cls._spec()
            if name not in spec.methods:
                raise NotAMethodError(f"{self._cls.name}.{name} is not a @method() of the class"
                                   f" (its methods: {', '.join(spec.methods)})")
            raw = None
            if self._cls._user_cls is not None:
                raw = getattr(self._cls._user_cls, name)
            options = dataclasses.replace(self._cls.options, generator=name in spec.generators)
            method = Function(self._cls.name, app=self._cls._app, app_name=self._cls._app_name,
                              raw=raw, options=options, method=name,
                              target=self._target, bound_local=self._local_method(name))
            self._methods[name] = method
        return method

    def _local_method(self, name: str) -> Callable[..., Any] | None:
        """Run here: one local instance per Obj, with its enter methods run once."""
        user_cls = self._cls._user_cls
        if user_cls is None:
            return None

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._local is None:
                instance = instantiate(user_cls, dict(self._params))
                for enter in lifecycle_methods(user_cls, Role.ENTER):
                    getattr(instance, enter)()
                self._local = instance
            return getattr(self._local, name)(*args, **kwargs)

        return call


def _cls_from_name(app_name: str, name: str, overrides: tuple[tuple[str, Any], ...]) -> Cls:
    return Cls(name, app_name=app_name, overrides=overrides)


def _obj_of(cls: Cls, params: tuple[tuple[str, Any], ...]) -> Obj:
    return Obj(cls, params)
