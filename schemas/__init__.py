"""The published JSON Schema of the model file, installed inside the nftfwd package."""
