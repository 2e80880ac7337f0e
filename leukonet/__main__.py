"""python -m leukonet"""
from leukonet.cli import console

raise SystemExit(console())
