"""Data files shipped with the suite (models, lattices, trained demo policies)."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """Path of a shipped asset; raises FileNotFoundError naming it if it is missing."""
    path = ASSETS_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"asset {'/'.join(parts)!r} not found under {ASSETS_DIR}")
    return path
