"""The machinery every fluidgpt configuration shares: errors, plain-dict serialisation,
presets and the typed settings of an experiment file.

A configuration dataclass (see :mod:`.networks` and :mod:`.training`) subclasses
:class:`_Config`: it travels inside checkpoints as a plain dict (``to_dict`` /
``from_dict``: lists, numbers, strings, None), unknown keys are an error, and every
combination that cannot work is refused at construction by its ``_validate``.
:func:`settings_type` makes the TypedDict of what an experiment file may write for it (a
``preset`` plus any field but the data-sized ``DATA_FIELDS``), which LightningCLI
(jsonargparse) validates key by key.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

__all__ = ["ConfigError", "settings_type"]

C = TypeVar("C", bound="_Config")


class ConfigError(ValueError):
    """A configuration that cannot describe a working network or run; the message says why."""


class _Config:
    """Serialisation and presets shared by every configuration dataclass."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    label: ClassVar[str] = "config"
    #: Fields whose values come from the data (the DataModule), not from a settings file.
    DATA_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if isinstance(getattr(self, f.name), list):  # lists from JSON/YAML compare equal
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        pass

    def _need(self, cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{self.label} config '{getattr(self, 'name', '?')}': {msg}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings, None): safe for weights_only loading."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown {cls.label} config key(s) {unknown}; valid keys are "
                              f"{cls.field_names()}")
        return cls(**d)

    @classmethod
    def from_preset(cls: type[C], name: str, **overrides: Any) -> C:
        """A named preset with any field overridden, e.g. ``n_particles=64``."""
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown {cls.label} preset {name!r}; available presets: "
                              f"{sorted(cls.PRESETS)}")
        values = {"name": name, **cls.PRESETS[name], **overrides}
        return cls.from_dict(values)

    @classmethod
    def from_settings(cls: type[C], settings: Mapping[str, Any] | None = None,
                      **data: Any) -> C:
        """The preset named by ``settings["preset"]`` (none: the dataclass defaults), then
        ``data`` (the sizes read from the data), then the other settings.

        A data-sized field written in the settings must agree with the data (a checkpoint's
        full dict holds them all; an experiment file never needs to write them).
        """
        values = dict(settings or {})
        preset = values.pop("preset", None)
        clash = {k: values[k] for k in cls.DATA_FIELDS if k in values and k in data
                 and values[k] != data[k]}
        if clash:
            raise ConfigError(f"{cls.label} config: {sorted(clash)} come from the data "
                              f"({ {k: data[k] for k in clash} }), found {clash}")
        if preset is None:
            return cls.from_dict({**data, **values})
        return cls.from_preset(preset, **{**data, **values})

    def replace(self: C, **changes: Any) -> C:
        return self.from_dict({**self.to_dict(), **changes})


def settings_type(cls: type[_Config]) -> type:
    """The TypedDict of what a settings file may write for ``cls``: ``preset`` (one of its
    presets) and every field except ``name`` and the data-sized ones, all optional."""
    hints = typing.get_type_hints(cls)
    keys: dict[str, Any] = {}
    if cls.PRESETS:
        keys["preset"] = Literal[tuple(cls.PRESETS)]  # type: ignore[valid-type]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name != "name" and f.name not in cls.DATA_FIELDS:
            keys[f.name] = hints[f.name]
    name = cls.__name__.replace("Config", "Settings")
    settings = TypedDict(name, keys, total=False)  # type: ignore[operator]
    # where the name is bound (next to its dataclass), so the type's import path resolves
    settings.__module__ = cls.__module__
    settings.__doc__ = (f"Settings of a {cls.__name__}: an optional preset "
                        f"({', '.join(cls.PRESETS) or 'none'}) and fields to override; sizes "
                        f"from the data ({', '.join(cls.DATA_FIELDS) or 'none'}) are not "
                        "written.")
    return settings

