"""``bikecount up``: the whole stack on this machine, no Docker needed.

The command and its options (``up``), what can start here (``optional_services``), the
services' output on the terminal (``service_output``, ``first_models``, ``ready``) and where
the in-process MLflow client's chatter goes (``chatter``). The stack itself is library code,
:mod:`bikecount.stack`.
"""

from bikecount.cli.stack.service_output import PREFIX_WIDTH
from bikecount.cli.stack.up import up_command

__all__ = ["PREFIX_WIDTH", "up_command"]
