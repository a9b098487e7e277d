"""What makes a run's configuration different from the defaults, for the `runs` table and submission records."""
from dataclasses import fields, replace

from .core.config import Config


def config_changes(values: dict) -> dict:
    """The fields of a saved config that differ from the defaults, ignoring keys an older or newer kit wrote."""
    known = {f.name for f in fields(Config)}
    config, default = replace(Config(), **{k: v for k, v in values.items() if k in known}), Config()
    return {f.name: getattr(config, f.name) for f in fields(Config)
            if getattr(config, f.name) != getattr(default, f.name)}
