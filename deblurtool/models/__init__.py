"""Networks and their weights files."""

from deblurtool.models.generator import GeneratorConfig, ResnetGenerator

__all__ = ["GeneratorConfig", "ResnetGenerator"]
