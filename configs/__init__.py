"""The example run configs (`*.yaml`), shipped inside the package as `concner.configs`.

Not code: this file only makes the folder a package, so that `importlib.resources` finds the
configs both in an editable install and in an installed wheel (`concner.tasks.engine.bundled`).
"""
