"""``python -m ganforge`` (and ``torchrun ... -m ganforge build ...``): the ``ganforge`` command."""

from .launch import main

main()
