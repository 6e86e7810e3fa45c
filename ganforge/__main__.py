"""``python -m ganforge`` (and ``torchrun ... -m ganforge build ...``): the ``ganforge`` command."""

from .cli import main

main()
