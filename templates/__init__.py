"""The nft templates, installed inside the nftfwd package."""
