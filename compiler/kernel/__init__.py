"""What touches the host: its adapters, and the commands composed of them and the stages.

Adapters: libnftables, namespaces, netlink and conntrack, /proc and `ip`, sysctl, systemd,
the state directory. Commands: check, diff (live), load, doctor (examine), the libvirt
hook, install's systemd steps (service). tests/packaging/test_layers.py holds which is
which."""
