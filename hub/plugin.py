"""The base class of in-process plugins, and their loading from config and entry points."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .bus.catalogue import HOOKS, Hook
from .bus.handler import Handler
from .errors import ConfigError
from .settings import PluginSpec

log = logging.getLogger("imhub.plugins")

ENTRY_POINT_GROUP = "imhub.plugins"


class PluginConfig(BaseModel):
    """Base of a plugin's config model: unknown keys are errors, so typos surface at start-up."""

    model_config = ConfigDict(extra="forbid")


class Plugin(Handler):
    """Subclass, set `Config` and `hooks`, override `before` and/or `after`.

    `hooks` names the hooks the plugin takes (None: all). The config block of
    the server's config file is validated against `Config` at start-up.
    """

    Config: ClassVar[type[PluginConfig]] = PluginConfig
    hooks: ClassVar[frozenset[str] | None] = None

    def __init__(self, config: PluginConfig) -> None:
        self.config = config
        self.name = type(self).__name__

    def wants(self, hook: Hook, tenant_id: str) -> bool:
        return self.hooks is None or hook.name in self.hooks


def _resolve(ref: str) -> Any:
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if ref in eps:
        return eps[ref].load()
    module_name, _, attr = ref.partition(":")
    if not attr:
        raise ConfigError(f"plugin '{ref}': expected 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"plugin '{ref}': cannot import {module_name}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"plugin '{ref}': {module_name} has no {attr}") from None


def build_plugin(spec: PluginSpec) -> Plugin:
    cls = _resolve(spec.module)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise ConfigError(f"plugin '{spec.module}': not a subclass of hub.plugin.Plugin")
    try:
        config = cls.Config.model_validate(spec.config)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        where = f"config key '{key}'" if key else "config"
        msg = " ".join(str(err["msg"]).split())  # one line, whatever a validator raised
        raise ConfigError(f"plugin '{spec.module}' {where}: {msg}") from None
    unknown = (cls.hooks or frozenset()) - HOOKS.keys()
    if unknown:
        raise ConfigError(f"plugin '{spec.module}': unknown hooks {sorted(unknown)}")
    try:
        plugin = cls(config)
    except Exception as exc:  # its own start-up failed: name the plugin, in one line
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(f"plugin '{spec.module}' could not start: {msg}") from None
    plugin.priority = spec.priority
    plugin.timeout = spec.timeout
    plugin.failed_continue = spec.failed_continue
    return plugin


def load_plugins(specs: list[PluginSpec]) -> list[Plugin]:
    """Plugins listed in config, then installed entry points the config does not mention."""
    plugins = [build_plugin(s) for s in specs]
    named = {s.module for s in specs}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in named and ep.value not in named:
            plugins.append(build_plugin(PluginSpec(module=ep.name)))
            log.info("loaded plugin %s from entry point %s", ep.value, ep.name)
    return plugins
