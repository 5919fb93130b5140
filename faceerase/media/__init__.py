"""Files in and out: images, videos, their metadata, and atomic outputs."""
