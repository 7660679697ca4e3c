"""Build hook: ship every model folder of the checkout's top-level ``models/`` inside the package.

The metadata lives in ``pyproject.toml``.  This file only adds the package list, because
``pyproject.toml`` cannot both discover packages and map an outside folder into one:
``models/<id>/`` (``model.json``, ``weights.pt``, ``model_card.md``) becomes
``mslesion/models/<id>/`` in the wheel and the sdist, which
:func:`mslesion.model.store.models_root` reads in an installed package.
"""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mslesion", "mslesion.*"]), "mslesion.models"],
      package_dir={"mslesion.models": "models"})
