"""The configuration reference (``docs/configuration.md``), generated from the settings classes so that the
settings' descriptions are its one source: ``python -m coldproxy.settings_reference > docs/configuration.md``.
A test fails when the committed page differs from what this writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from coldproxy.config import REPO_ROOT, BundleSettings, ServiceSettings, TrainSettings

HEADER = """# Configuration

Every option is an environment variable (pydantic-settings; a `.env` file in the working directory is read too).
A list or a mapping is given as JSON (`COLDPROXY_API_KEYS='["k1", "k2"]'`). This page is generated from the
settings' own descriptions (`python -m coldproxy.settings_reference > docs/configuration.md`); why the defaults
are what they are, with the measurements, is in [Models](models.md) and [Benchmarks](benchmarks.md).
"""

SECTIONS = (
    (
        ServiceSettings,
        "The service",
        "What `coldproxy serve` (and `up`) reads: where the package and Redis are, "
        "HTTP limits, keys, batching, ONNX Runtime, the index, rollouts.",
    ),
    (
        TrainSettings,
        "Training the item model",
        "What `coldproxy train` and `coldproxy export` read: the data and its "
        "split, the ID model or your own ID space, the generators, diffusion and gate, calibration, export checks.",
    ),
    (
        BundleSettings,
        "Training the bundle model",
        "What `coldproxy train-bundles` reads, under its own prefix "
        "(`COLDPROXY_BUNDLES_...`): its own settings, and the seed, diffusion, sampler and gate settings it shares "
        "with the item model (its own defaults where they differ).",
    ),
)


def env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        if names:
            return names
    prefix = cls.model_config.get("env_prefix", "")
    return [f"{prefix}{name}".upper()]


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, Path):  # shown from the repository's root, as on every clone
        return f"`{os.path.relpath(value, REPO_ROOT) if value.is_absolute() else value}`"
    return f"`{json.dumps(value, default=str)}`"


def concerns(cls: type[BaseSettings]) -> list[tuple[str, list[str]]]:
    """(title, field names) per settings class in ``cls``'s bases that declares fields (its docstring's first line is
    the title; ``cls`` itself first), each field under the most derived class that declares it: one table a concern."""
    seen: set[str] = set()
    out = []
    for base in cls.__mro__:
        if not (isinstance(base, type) and issubclass(base, BaseSettings)) or base is BaseSettings:
            continue
        names = [n for n in base.__dict__.get("__annotations__", {}) if n in cls.model_fields and n not in seen]
        seen.update(names)
        if names:
            out.append(((base.__doc__ or base.__name__).strip().splitlines()[0].rstrip("."), names))
    return out


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    out = [HEADER]
    for cls, title, intro in SECTIONS:
        out += [f"\n## {title}\n", f"{intro}\n"]
        for concern, names in concerns(cls):
            out += [f"\n### {concern}\n", "| variable | default | meaning |", "|---|---|---|"]
            for name in names:
                field = cls.model_fields[name]
                env = ", ".join(f"`{n}`" for n in env_names(cls, name, field))
                out.append(f"| {env} | {cell(default_text(field))} | {cell(field.description or '')} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
