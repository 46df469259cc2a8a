"""What a comparison asks for: the spec, its TOML files, presets and methods.

- :mod:`.experiment`: :class:`ExperimentSpec` (pydantic), its layering (preset < TOML
  file < flags) and its one-line validation errors.
- :mod:`.to_toml`: a spec written back as the TOML that ``--spec`` reads.
- :mod:`.presets`: the named comparisons ``convdrop presets`` lists.
- :mod:`.base_methods` and :mod:`.methods`: each method's model, regularizer, placement
  and schedule, built into a recipe.
- :mod:`.external`: ``torchvision:NAME`` / ``timm:NAME`` models, built offline.

May import :mod:`convdrop.lab.data` (the batched augmentation a recipe carries) and the
core (models, placement, layers, ops); nothing above it in ``lab``.
"""
