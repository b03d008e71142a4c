"""Speed and memory measurements of onlinepg against its peers (``python -m bench.kernels``)."""
