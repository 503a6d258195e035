"""concner: ConCNER (dual-contrastive cross-lingual NER) as a reproducible Prefect pipeline.

The importable code lives in the top-level folders ``flows/``, ``tasks/`` and ``models/``,
mapped to ``concner.flows``, ``concner.tasks`` and ``concner.models`` by pyproject.toml.
"""

__version__ = "0.1.0"
