"""Experiment configs (ml_collections ``get_config(arg=None)`` files), a package so that
configs can share code by import (``from configs.ablations import common``)."""
