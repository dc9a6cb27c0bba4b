"""One module per CLI command; each exposes one function that ``deblurtool.cli`` registers."""
