"""Where the client finds the service and its key: given, else THAW_URL / THAW_API_KEY, else the
config file (THAW_CONFIG, default ~/.config/thaw/config.toml: `url = "..."`, `key = "..."`)."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    return Path(os.environ.get("THAW_CONFIG") or Path.home() / ".config" / "thaw" / "config.toml")


@dataclass(frozen=True)
class Connection:
    url: str
    key: str | None

    @classmethod
    def resolve(cls, url: str | None = None, key: str | None = None) -> Connection:
        saved = read_config(config_path())
        saved_url = (saved.get("url") or DEFAULT_URL).rstrip("/")
        resolved = (url or os.environ.get("THAW_URL") or saved_url).rstrip("/")
        # The saved key is the saved service's: never sent to another URL that was named instead.
        saved_key = saved.get("key") if resolved == saved_url else None
        return cls(url=resolved, key=key or os.environ.get("THAW_API_KEY") or saved_key)


def read_config(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open("rb") as file:
        values = tomllib.load(file)
    return {name: str(values[name]) for name in ("url", "key") if name in values}


def write_config(path: Path, url: str, key: str | None) -> None:
    """Only the owner may read it: it holds an API key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A JSON string is a valid TOML basic string.
    lines = [f"url = {json.dumps(url)}"] + ([f"key = {json.dumps(key)}"] if key else [])
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n")
