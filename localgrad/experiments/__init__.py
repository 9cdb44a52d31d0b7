"""Experiments, not library: the demo (`localgrad demo`) and the tasks, rows
and meta-learning demos it runs. Everything here trains rules through the
library's public API; nothing in the library imports it."""
