"""The shipped default generator and its model card (README.md), installed as the package data of
``deblurtool.weights`` (pyproject.toml maps this folder there); ``deblurtool.models.weights`` finds them."""
