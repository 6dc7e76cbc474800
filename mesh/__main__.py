"""`python -m mesh` is the `mesh` command."""

from mesh.cli.app import main

main()
