# Copyright: nftfwd contributors
# MIT License (see LICENSE in nftfwd's repository)
"""The controller side of nftfwd.fleet.nftfwd: check the model here, then send it.

The model is compiled on the controller by the `nftfwd` command on the controller's
PATH (run as a program: nftfwd is never imported, Ansible's Python may not have it), so
a model that does not compile fails every host of the play before any host is touched.
Only then is it copied to a temporary directory on the host, where the module runs
nftfwd against the live ruleset.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.nftfwd.fleet.plugins.module_utils.nftfwd_options import ARGUMENT_SPEC

MODULE = "nftfwd.fleet.nftfwd"
CHECK_TIMEOUT_S = 300


def check_on_controller(model, host):
    """Compile the model with the controller's nftfwd: every host of it, and `host`
    (when given) must be one of them. Raises AnsibleActionFail with nftfwd's own
    messages (file, line, key path) when it does not compile."""
    command = shutil.which("nftfwd")
    if command is None:
        raise AnsibleActionFail(
            "the nftfwd command is not on the controller's PATH (%s): install nftfwd "
            "there (pip, or the Debian package); the model is checked on the controller "
            "before any host is touched." % os.environ.get("PATH", "")
        )
    # The model against itself: every host of it compiled, no kernel and no root needed.
    argv = [command, "diff", "--from", model, model, "--format", "json"]
    if host is not None:
        argv += ["--host", host]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, NO_COLOR="1"),
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise AnsibleActionFail("cannot run %s on the controller: %s" % (command, err))
    if done.returncode != 0:
        raise AnsibleActionFail(
            "the model does not compile (checked on the controller with %s; no host was "
            "touched):\n%s" % (command, to_text(done.stderr).strip())
        )


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # unused since ansible-core 2.4
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        args = {name: value for name, value in args.items() if value is not None}
        present = args["state"] == "present"
        confirming = args["confirm_pending"]
        if present:
            args.setdefault("host", (task_vars or {}).get("inventory_hostname"))
        if present and not confirming and "src" not in args:
            raise AnsibleActionFail("src (the model file) is required with state=present.")
        try:
            if "src" in args:
                try:
                    model = self._find_needle("files", args["src"])
                except Exception as err:  # AnsibleError, as the copy module reports it
                    raise AnsibleActionFail(to_text(err))
                check_on_controller(model, args.get("host") if present else None)
                remote_tmp = self._make_tmp_path()
                remote_model = self._connection._shell.join_path(remote_tmp, "nftfwd.yaml")
                self._transfer_file(model, remote_model)
                self._fixup_perms2((remote_tmp, remote_model))
                args["src"] = remote_model
            result.update(
                self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
            )
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
