#!/usr/bin/python
# Copyright: nftfwd contributors
# MIT License (see LICENSE in nftfwd's repository)
"""The target side of nftfwd.fleet.nftfwd: runs the nftfwd command on the host.

The action plugin of the same name checks the model on the controller and sends it;
this module only runs `nftfwd diff`, `load`, `confirm`, `unload` and `doctor` there and
reads their JSON and exit codes. It never imports nftfwd: the host's Python that runs
Ansible's modules need not be the one nftfwd is installed for.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nftfwd
short_description: Load a host's port forwards from one nftfwd model, atomically
version_added: 0.1.0
description:
  - Applies the host's part of an nftfwd model (one YAML file for a whole fleet) as one
    atomic nftables transaction, through the C(nftfwd) command on the host; or removes
    nftfwd's table (O(state=absent)).
  - The model is read on the controller and checked there with the C(nftfwd) command
    found on the controller's PATH (C(nftfwd diff --from MODEL MODEL)); a model that
    does not compile fails every host of the play before any host is touched. The model
    is then copied to a temporary file on the host.
  - Only nftfwd's own table changes; every other table on the host stays as it is.
  - C(changed) is true only when the table changes (or, with O(enable_forwarding), a
    forwarding sysctl); a second run reports C(changed=false).
  - nftfwd keeps its lock and rollback state in C(/var/lib/nftfwd), or in
    C($NFTFWD_STATE_DIR) when the task's environment sets it.
version_added_collection: nftfwd.fleet
author:
  - nftfwd contributors (!UNKNOWN)
options:
  src:
    description:
      - The model file, on the controller (looked up like the C(copy) module's C(src),
        also in the role's or playbook's C(files/)).
      - Required with O(state=present), unless O(confirm_pending=true).
      - With O(state=absent), the model's C(table) is removed; without O(src), the host's
        own model or nftfwd's state says which table.
    type: path
  host:
    description:
      - The model's host to apply, by its name in the model.
      - Defaults to the inventory name of the host (C(inventory_hostname)).
    type: str
  state:
    description:
      - V(present) loads the host's table; V(absent) removes nftfwd's table, and only it
        (C(nftfwd unload)).
    type: str
    choices: [present, absent]
    default: present
  confirm:
    description:
      - Seconds (1 to 3600). The load returns once the new rules are live
        (C(nftfwd load --confirm SECONDS --detach)) and reports C(changed); unless a
        later task confirms them (this module with O(confirm_pending=true)) within that
        time, a guard process on the host rolls them back to the previous table. A play
        that loses the host or fails before confirming gets the old rules back.
      - Nothing is pending when the load changes nothing.
    type: int
  confirm_pending:
    description:
      - Confirm a load made with O(confirm) (C(nftfwd confirm)); C(changed) when one was
        pending. With O(src), the host's table is then compared with the model, and the
        task fails when it is not the model's (for example, rolled back because the
        confirmation came too late).
    type: bool
    default: false
  enable_forwarding:
    description:
      - Turn on IP forwarding now and at boot (C(nftfwd load --enable-forwarding)).
    type: bool
    default: false
  executable:
    description:
      - The nftfwd command on the host (a name on the host's PATH, or a path).
    type: str
    default: nftfwd
  fail_on_findings:
    description:
      - Fail the host when C(nftfwd doctor) finds errors after the load (the rules stay
        loaded; with O(confirm), they are rolled back unless confirmed). In check mode,
        doctor's findings describe the host before the load and are returned only.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Runs C(nftfwd diff) on the host; changes nothing.
  diff_mode:
    support: full
    description: The forwards removed (before) and added (after), and changed rules.
  action:
    support: full
    description: An action plugin checks the model on the controller and sends it.
notes:
  - Needs root on the host (C(become)); the host needs nftfwd installed (the role
    nftfwd.fleet.install does that) and the controller needs the C(nftfwd) command.
"""

EXAMPLES = r"""
- name: Load this host's forwards; rolled back in 120 s unless confirmed
  nftfwd.fleet.nftfwd:
    src: fleet.yaml
    confirm: 120

- name: Keep them
  nftfwd.fleet.nftfwd:
    src: fleet.yaml
    confirm_pending: true

- name: Remove nftfwd's table, and nothing else
  nftfwd.fleet.nftfwd:
    state: absent
"""

RETURN = r"""
host:
  description: The model's host that was applied.
  returned: with O(state=present)
  type: str
  sample: kvm1
table:
  description: nftfwd's table (family inet).
  returned: always, but with O(confirm_pending=true)
  type: str
  sample: nftfwd
plan:
  description:
    - What the load changes (or changed), as C(nftfwd diff --format json) prints it for
      this host, before the load.
  returned: with O(state=present), unless O(confirm_pending=true)
  type: dict
pending_confirmation:
  description: The new rules wait for O(confirm_pending); rolled back otherwise.
  returned: with O(state=present)
  type: bool
findings:
  description:
    - C(nftfwd doctor --format json) for this host, after the load (before it, in check
      mode); null when doctor could not check (see the warnings).
  returned: with O(state=present), unless O(confirm_pending=true)
  type: dict
forwarding:
  description: The forwarding sysctls O(enable_forwarding) set (C(nftfwd load)'s lines).
  returned: with O(enable_forwarding=true)
  type: list
  elements: str
stdout:
  description: What the last nftfwd command printed.
  returned: always
  type: str
stderr:
  description: What the last nftfwd command printed on stderr.
  returned: always
  type: str
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nftfwd.fleet.plugins.module_utils.nftfwd_options import ARGUMENT_SPEC

NOT_PENDING = "no `nftfwd load --confirm` is waiting for confirmation"
FAMILIES = {"ipv4": "IPv4", "ipv6": "IPv6"}


def _ports(ports):
    first, last = ports["first"], ports["last"]
    return str(first) if first == last else "%d-%d" % (first, last)


def _guest(side):
    name = side.get("guest") or "guest"
    return "%s %s port %s" % (name, side["guest_address"], _ports(side["guest_port"]))


def forward_line(entry, side=None):
    """One forward as `nftfwd diff` writes it: tcp 8080 on any IPv4 host address -> web
    192.168.122.10 port 80 (from the sources, when restricted)."""
    listen = entry["listen_address"] or "any %s host address" % FAMILIES[entry["family"]]
    line = "%s %s on %s -> %s" % (
        entry["protocol"],
        _ports(entry["host_port"]),
        listen,
        _guest(side or entry),
    )
    if entry.get("sources"):
        line += " from " + ", ".join(entry["sources"])
    return line


def diff_sides(plan):
    """Ansible's before/after: the forwards removed (and the old side of a changed one),
    the forwards added (and the new side), then the rules outside the maps that change."""
    before, after = [], []
    for entry in plan["forwards"]["removed"]:
        before.append("forward " + forward_line(entry))
    for entry in plan["forwards"]["added"]:
        after.append("forward " + forward_line(entry))
    for entry in plan["forwards"]["changed"]:
        before.append("forward " + forward_line(entry, entry["old"]))
        after.append("forward " + forward_line(entry, entry["new"]))
    for line in plan["rules_diff"]:
        if line.startswith("-") and not line.startswith("---"):
            before.append("rule " + line[1:].strip())
        elif line.startswith("+") and not line.startswith("+++"):
            after.append("rule " + line[1:].strip())
    return "".join(x + "\n" for x in sorted(before)), "".join(x + "\n" for x in sorted(after))


class Nftfwd:
    """The nftfwd command on this host; every run's output is kept for the result."""

    def __init__(self, module):
        self.module = module
        name = module.params["executable"]
        if os.path.isabs(name):
            if not os.access(name, os.X_OK):
                module.fail_json(msg="%s is not an executable nftfwd command." % name)
            self.command = name
        else:
            self.command = module.get_bin_path(name, required=True)
        self.stdout = self.stderr = ""

    def run(self, *args):
        rc, out, err = self.module.run_command(
            [self.command] + list(args),
            environ_update={"NO_COLOR": "1", "LC_ALL": "C.UTF-8"},
        )
        self.stdout, self.stderr = out, err
        return rc

    def fail(self, what, rc, **extra):
        self.module.fail_json(
            msg="%s failed (exit %d): %s" % (what, rc, self.stderr.strip()),
            rc=rc,
            stdout=self.stdout,
            stderr=self.stderr,
            **extra
        )

    def json(self, what, args, outcomes):
        """Run a command whose exit codes `outcomes` are results, not errors; return its
        exit code and JSON document."""
        rc = self.run(*args)
        if rc not in outcomes:
            self.fail(what, rc)
        try:
            return rc, json.loads(self.stdout)
        except ValueError:
            self.fail(what + " printed no JSON", rc)


def plan_of(nftfwd, model, host):
    dummy, document = nftfwd.json(
        "nftfwd diff", ["diff", model, "--host", host, "--format", "json"], (0, 1)
    )
    return document["hosts"][0]


def findings_of(nftfwd, model, host):
    """doctor's JSON, or None (with a warning) when doctor could not check this host."""
    rc = nftfwd.run("doctor", model, "--host", host, "--format", "json")
    if rc in (0, 1):
        try:
            return json.loads(nftfwd.stdout)
        except ValueError:
            pass
    nftfwd.module.warn("nftfwd doctor could not check the host: %s" % nftfwd.stderr.strip())
    return None


def present(module, nftfwd, result):
    params = module.params
    model, host = params["src"], params["host"]
    result.update(host=host, pending_confirmation=False)
    plan = plan_of(nftfwd, model, host)
    result.update(plan=plan, table=plan["table"], changed=plan["changed"])
    if module._diff:
        before, after = diff_sides(plan)
        result["diff"] = {
            "before": before,
            "after": after,
            "before_header": "%s: table inet %s as loaded" % (host, plan["table"]),
            "after_header": "%s: table inet %s of the model" % (host, plan["table"]),
        }
    if module.check_mode:
        findings = findings_of(nftfwd, model, host)
        result["findings"] = findings
        if params["enable_forwarding"] and findings is not None:
            off = [f for f in findings["findings"] if f["id"].endswith("-forwarding-off")]
            result["forwarding"] = [f["subject"] + " = 1" for f in off]
            result["changed"] = result["changed"] or bool(off)
        return
    if plan["changed"] or params["enable_forwarding"]:
        args = ["load", model, "--host", host, "--atomic", "--yes"]
        if params["confirm"] is not None and plan["changed"]:
            args += ["--confirm", str(params["confirm"]), "--detach"]
        if params["enable_forwarding"]:
            args.append("--enable-forwarding")
        rc = nftfwd.run(*args)
        if rc == 3:
            nftfwd.fail("nftfwd load (rolled back to the previous table)", rc, changed=False)
        if rc != 0:
            nftfwd.fail("nftfwd load (nothing changed)", rc, changed=False)
        result["stdout"], result["stderr"] = nftfwd.stdout, nftfwd.stderr
        if params["enable_forwarding"]:
            # `set net.ipv4.ip_forward = 1: why` for each setting the load changed.
            forwarding = [
                line[4:].split(":", 1)[0]
                for line in nftfwd.stderr.splitlines()
                if line.startswith("set ")
            ]
            result["forwarding"] = forwarding
            result["changed"] = result["changed"] or bool(forwarding)
        result["pending_confirmation"] = "--confirm" in args
    findings = findings_of(nftfwd, model, host)
    result["findings"] = findings
    if params["fail_on_findings"] and findings is not None and findings["counts"]["error"]:
        ids = ", ".join(f["id"] for f in findings["findings"] if f["severity"] == "error")
        module.fail_json(
            msg="nftfwd doctor found errors on %s: %s%s"
            % (
                host,
                ids,
                "; the rules roll back unless confirmed"
                if result["pending_confirmation"]
                else "; the rules stay loaded",
            ),
            **result
        )


def confirm_pending(module, nftfwd, result):
    params = module.params
    if module.check_mode:  # a check run loaded nothing, so nothing waits
        return
    rc = nftfwd.run("confirm")
    if rc == 0:
        result["changed"] = True
    elif NOT_PENDING not in nftfwd.stderr:
        nftfwd.fail("nftfwd confirm", rc)
    result["stdout"], result["stderr"] = nftfwd.stdout, nftfwd.stderr
    if params["src"] is not None:
        plan = plan_of(nftfwd, params["src"], params["host"])
        if plan["changed"]:
            module.fail_json(
                msg="the table on %s is not the model's: the load was rolled back "
                "(confirmed too late, or never loaded)" % params["host"],
                plan=plan,
                **result
            )


def absent(module, nftfwd, result):
    model = [module.params["src"]] if module.params["src"] else []
    rc = nftfwd.run("unload", *(model + ["--dry-run"]))
    if rc not in (0, 1):
        nftfwd.fail("nftfwd unload --dry-run", rc)
    loaded = rc == 1
    # `would remove table inet NAME.` / `table inet NAME is not loaded; ...`
    found = re.search(r"table inet (\w+)", nftfwd.stdout)
    table = found.group(1) if found else None
    result.update(changed=loaded, table=table)
    if module._diff:
        result["diff"] = {"before": "table inet %s\n" % table if loaded else "", "after": ""}
    if loaded and not module.check_mode:
        rc = nftfwd.run("unload", *model)
        if rc != 0:
            nftfwd.fail("nftfwd unload", rc)
    result["stdout"], result["stderr"] = nftfwd.stdout, nftfwd.stderr


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[["confirm_pending", True, ["host"]]],
        supports_check_mode=True,
    )
    params = module.params
    if params["confirm"] is not None and params["confirm_pending"]:
        module.fail_json(msg="confirm and confirm_pending=true: one loads, the other confirms.")
    if params["confirm"] is not None and not 1 <= params["confirm"] <= 3600:
        module.fail_json(msg="confirm: %d is not 1 to 3600 seconds." % params["confirm"])
    if params["state"] == "present" and not params["confirm_pending"]:
        if not params["src"] or not params["host"]:
            module.fail_json(msg="state=present needs src and host (the action plugin sets host).")
    result = {"changed": False, "stdout": "", "stderr": ""}
    nftfwd = Nftfwd(module)
    if params["state"] == "absent":
        absent(module, nftfwd, result)
    elif params["confirm_pending"]:
        confirm_pending(module, nftfwd, result)
    else:
        present(module, nftfwd, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
