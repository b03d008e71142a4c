"""Installed as ``onlinepg.data``: the configs and sweeps shipped with the package (read via ``onlinepg.shipped``)."""
