"""``python -m leukonet``: the same as the ``leukonet`` command."""
from leukonet.cli import main

raise SystemExit(main())
