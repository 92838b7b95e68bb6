"""Every template nftfwd renders, through compiler/templating.py; installed inside the package."""
