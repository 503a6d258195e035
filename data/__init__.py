"""The synthetic sample corpora (`samples/`), shipped inside the package as `concner.data`.

Not code: this file only makes the folder a package, so that `importlib.resources` finds the
samples both in an editable install and in an installed wheel (`concner.tasks.engine.bundled`). The
bundled configs name them relative to themselves (`../data/samples/...`), which holds in both.
"""
