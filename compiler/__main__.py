"""`python -m nftfwd`: the command line."""

from nftfwd.cli import main

main()
