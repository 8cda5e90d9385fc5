"""i2sb: image restoration with the Image-to-Image Schrödinger Bridge."""

__version__ = "0.1.0"
