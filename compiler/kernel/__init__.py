"""The only stage that touches the host: libnftables, namespaces, conntrack."""
