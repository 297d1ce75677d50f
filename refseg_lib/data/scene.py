"""The symbolic scene of a ShapeRef image: its objects (what RefCOCO annotates, plus the
attributes that words name), the backdrop and the referent. ``shapes`` renders scenes to
images and masks; ``shapes_language`` describes them and resolves expressions against them;
both read these types from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShapeObject:
    """One object: what RefCOCO annotates (category, mask) plus the attributes words name."""

    category: str
    color: str
    size: str  # "small" or "big"
    x: float  # centre, fraction of the image width
    y: float  # centre, fraction of the image height, downwards
    radius: float  # bounding radius, fraction of the image side
    angle: float = 0.0  # rotation, radians, counter-clockwise

    @property
    def name(self) -> str:
        return f"{self.size} {self.color} {self.category}"


@dataclass(frozen=True)
class Background:
    """A smooth textured backdrop: grey level, colour tint, linear gradient, noise offsets."""

    level: float = 0.45
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)  # added to R, G, B
    slope: tuple[float, float] = (0.0, 0.0)  # gradient across the image, (down, right)
    offsets: tuple[int, ...] = (0, 0, 0, 0, 0, 0)  # where texture and noise banks are read


@dataclass(frozen=True)
class Scene:
    """The symbolic scene: objects back to front (later ones occlude earlier ones)."""

    objects: tuple[ShapeObject, ...]
    referent: int
    background: Background = Background()

    def describe(self) -> str:
        """One line per object, e.g. ``'2 big red star at (0.31, 0.62) <- referent'``."""
        return "\n".join(f"{k} {o.name} at ({o.x:.2f}, {o.y:.2f})"
                         + (" <- referent" if k == self.referent else "")
                         for k, o in enumerate(self.objects))
