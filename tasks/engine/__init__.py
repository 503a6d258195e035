"""The engine around the stages: the run config, the store and its keys, the registry, preflight
checks, model references, estimates."""

ENGINE_ONLY = True  # only a package's face: stage keys follow the modules themselves
