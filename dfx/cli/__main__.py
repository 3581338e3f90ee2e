"""`python -m dfx.cli`: the `dfx` command."""
from . import main

main()
