"""Synthetic breast lesions whose look depends on malignancy the way radiologists describe it.

Benign: oval, circumscribed, homogeneous. Malignant: irregular or spiculated margin, heterogeneous,
posterior acoustic shadowing on US, microcalcifications on MG. Every property is driven by a per-image
``malignancy`` score in [0, 1] (a noisy view of the patient's latent state), so classes overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class LesionShape:
    """Radius profile r(theta) of a lesion outline, in pixels."""

    radius: float
    aspect: float
    angle: float
    harmonics: tuple[tuple[float, float], ...]
    spicules: tuple[tuple[float, float, float], ...]

    @classmethod
    def sample(cls, rng: np.random.Generator, radius: float, malignancy: float) -> "LesionShape":
        """Oval and smooth for low malignancy; lobulated and spiculated for high."""
        aspect = rng.uniform(0.55, 0.8) if malignancy < 0.5 else rng.uniform(0.7, 1.0)
        irregularity = 0.02 + 0.22 * malignancy ** 1.5
        harmonics = tuple((irregularity * rng.uniform(0.3, 1.0) / np.sqrt(k - 1), rng.uniform(0, 2 * np.pi))
                          for k in range(2, 9))
        n_spicules = rng.poisson(9 * malignancy ** 2)
        spicules = tuple((rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.7), rng.uniform(0.04, 0.1))
                         for _ in range(n_spicules))
        return cls(radius, aspect, rng.uniform(0, np.pi), harmonics, spicules)

    def profile(self, theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta)
        for k, (amplitude, phase) in enumerate(self.harmonics, start=2):
            r += amplitude * np.cos(k * theta + phase)
        for centre, length, width in self.spicules:
            gap = np.angle(np.exp(1j * (theta - centre)))
            r += length * np.exp(-0.5 * (gap / width) ** 2)
        return self.radius * r

    def polar(self, shape: tuple[int, int], centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Each pixel's distance from ``centre`` (row, col) in the lesion's frame, and the outline's radius in
        that pixel's direction."""
        rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
        dy, dx = rows - centre[0], cols - centre[1]
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u, v = cos * dx + sin * dy, (-sin * dx + cos * dy) / self.aspect
        return np.hypot(u, v), self.profile(np.arctan2(v, u))

    def mask(self, shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
        """Boolean 2D mask of the outline around ``centre`` (row, col)."""
        distance, outline = self.polar(shape, centre)
        return distance <= outline


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian-filtered noise."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def lesion_texture(rng: np.random.Generator, shape: tuple[int, ...], malignancy: float) -> np.ndarray:
    """Multiplicative texture around 1: nearly flat when benign, blotchy and necrotic when malignant."""
    heterogeneity = 0.04 + 0.35 * malignancy
    texture = 1 + heterogeneity * smooth_noise(rng, shape, sigma=2.5)
    return np.clip(texture, 0.2, 2.0)


def ultrasound(rng: np.random.Generator, size: int, shape: LesionShape, malignancy: float) -> tuple[np.ndarray, np.ndarray]:
    """8-bit B-mode-like image and lesion mask: speckled tissue layers, hypoechoic lesion,
    posterior shadowing (malignant) or enhancement (benign)."""
    centre = (size * rng.uniform(0.4, 0.55), size * rng.uniform(0.4, 0.6))
    mask = shape.mask((size, size), centre)
    depth = np.linspace(0, 1, size)[:, None]
    layers = 0.55 + 0.15 * np.sin(2 * np.pi * (depth * rng.uniform(2, 4) + 0.3 * smooth_noise(rng, (size, size), 12)))
    tissue = layers * (1 - 0.35 * depth)
    echo = rng.uniform(0.2, 0.35) + 0.1 * (1 - malignancy)
    soft_mask = ndimage.gaussian_filter(mask.astype(float), 0.6 + 2.0 * malignancy)
    lesion = echo * lesion_texture(rng, (size, size), malignancy)
    image = tissue * (1 - soft_mask) + lesion * soft_mask
    columns = mask.any(axis=0)
    below = np.cumsum(mask, axis=0) > 0
    posterior = below & ~mask & columns[None, :]
    posterior = ndimage.gaussian_filter(posterior.astype(float), 3)
    posterior_effect = rng.normal(0.5 * malignancy - 0.25, 0.08)
    image *= 1 - np.clip(posterior_effect, -0.4, 0.6) * posterior
    speckle = rng.gamma(shape=4.0, scale=0.25, size=(size, size))
    image = ndimage.gaussian_filter(image * speckle, 0.7)
    return np.clip(image * 255 / max(image.max(), 1e-6), 0, 255).astype(np.uint8), mask


def mammogram(rng: np.random.Generator, size: int, shape: LesionShape, malignancy: float) -> tuple[np.ndarray, np.ndarray]:
    """12-bit craniocaudal-like image and mask: breast on air, fibroglandular texture, dense mass,
    clustered microcalcifications that become more numerous with malignancy."""
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    breast = np.hypot((rows - size / 2) / (0.48 * size), cols / (0.9 * size)) < 1
    tissue = 0.35 + 0.12 * smooth_noise(rng, (size, size), 6) + 0.06 * smooth_noise(rng, (size, size), 1.5)
    centre = (size * rng.uniform(0.4, 0.6), size * rng.uniform(0.3, 0.55))
    mask = shape.mask((size, size), centre) & breast
    soft_mask = ndimage.gaussian_filter(mask.astype(float), 0.8 + 1.5 * malignancy)
    density = rng.uniform(0.22, 0.32) * lesion_texture(rng, (size, size), malignancy)
    image = np.where(breast, tissue, 0.02) + density * soft_mask
    n_calcifications = rng.poisson(1 + 14 * malignancy ** 2)
    inside = np.argwhere(ndimage.binary_dilation(mask, iterations=3))
    for r, c in inside[rng.integers(0, len(inside), n_calcifications)] if len(inside) else []:
        image[max(r - 1, 0): r + 1, max(c - 1, 0): c + 1] += rng.uniform(0.35, 0.6)
    image += 0.015 * rng.standard_normal((size, size))
    return np.clip(image * 3000, 0, 4095).astype(np.uint16), mask


def mri_t2(rng: np.random.Generator, size: int, slices: int, shape: LesionShape,
           malignancy: float) -> tuple[np.ndarray, np.ndarray]:
    """T2-weighted-like volume (z, y, x) and 3D mask: benign lesions bright and uniform (fibroadenoma,
    cyst), malignant ones intermediate and heterogeneous."""
    volume = 0.25 + 0.06 * smooth_noise(rng, (slices, size, size), 3)
    mask = np.zeros((slices, size, size), dtype=bool)
    centre = (size * rng.uniform(0.4, 0.6), size * rng.uniform(0.4, 0.6))
    mid, half = slices / 2 + rng.uniform(-1.5, 1.5), rng.uniform(0.25, 0.4) * slices
    distance, outline = shape.polar((size, size), centre)  # each slice scales the same outline
    for z in range(slices):
        extent = 1 - ((z - mid) / half) ** 2
        if extent > 0.05:
            mask[z] = distance <= float(np.sqrt(extent)) * outline
    signal = rng.uniform(0.75, 0.95) - 0.35 * malignancy
    lesion = signal * lesion_texture(rng, mask.shape, malignancy)
    soft = ndimage.gaussian_filter(mask.astype(float), (0.5, 0.7 + malignancy, 0.7 + malignancy))
    volume = volume * (1 - soft) + lesion * soft
    volume = np.abs(volume + 0.03 * rng.standard_normal(volume.shape) + 0.03j * rng.standard_normal(volume.shape))
    return (volume * 1000).astype(np.int16), mask
