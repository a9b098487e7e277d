"""What makes a run's configuration different from the defaults, for the `runs` table and submission records."""
from dataclasses import fields, replace

from .core.config import Config
from .core.checks import not_applying


def config_changes(values: dict) -> dict:
    """The fields of a saved config that differ from the defaults and that the run used (a flag its mode
    ignores, say --patience with --folds, is no difference), ignoring keys an older or newer kit wrote."""
    known = {f.name for f in fields(Config)}
    if "features" not in values and "deskew" in values:  # saved before the feature ladder: deskew or not
        values = {**values, "features": "deskew" if values["deskew"] else "pixels"}
    config, default = replace(Config(), **{k: v for k, v in values.items() if k in known}), Config()
    moot = not_applying(config)
    return {f.name: getattr(config, f.name) for f in fields(Config)
            if f.name not in moot and getattr(config, f.name) != getattr(default, f.name)}
