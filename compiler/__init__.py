"""nftfwd: a typed model of hosts, bridges and guests compiled into one nftables transaction."""

__version__ = "0.1.0"
