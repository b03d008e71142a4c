"""Subcommands of the ``onlinepg`` console script, one module each.

A module here defines ``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``; ``onlinepg.cli``
discovers them, so adding a command never touches the dispatcher. Modules import their heavy dependencies
inside ``main`` so ``onlinepg --help`` stays fast.
"""
