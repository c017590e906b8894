"""``${VAR}`` and ``${VAR:-default}`` in the values of a rules file.

Interpolation happens on the parsed data, in every string value at any depth (not in
keys), before validation, so ``timeout_ms: ${TIMEOUT:-50}`` becomes the number 50 once
validated. ``$${`` writes a literal ``${``. A variable that is not set and has no
default is an error naming it; so is a ``${`` that does not form a reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .locations import PathT

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]{0,127})(?::-([^}]{0,1024}))?\}|\$\{")

Report = Callable[[PathT, str], None]


def interpolate_text(text: str, env: Mapping[str, str], path: PathT, report: Report) -> str:
    """Replace the references of one string."""
    if "${" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        whole = m.group(0)
        if whole == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name is None:
            report(path, "'${' starts an environment variable: write ${NAME} or ${NAME:-default} "
                         "(or $${ for a literal ${)")
            return whole
        value = env.get(name)
        if value is None:
            if default is None:
                report(path, f"environment variable {name} is not set "
                             f"(set it, or write ${{{name}:-default}} to give a default)")
                return ""
            return default
        return value

    return _REF.sub(sub, text)


def interpolate(data: Any, path: PathT, env: Mapping[str, str], report: Report) -> Any:
    """A copy of ``data`` with every string value interpolated (depth is bounded by the
    shape check that runs first)."""
    if isinstance(data, str):
        return interpolate_text(data, env, path, report)
    if isinstance(data, dict):
        return {k: interpolate(v, (*path, k if isinstance(k, str) else repr(k)), env, report)
                for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [interpolate(v, (*path, i), env, report) for i, v in enumerate(data)]
    return data
