"""The bottom layer: errors, the registry and every vocabulary, layer strings, the typed config, atomic files.

Nothing here imports torch at module level except the checkpoint helpers; nothing here imports any other
vaelab package (the import-linter contract in pyproject.toml checks it).
"""
