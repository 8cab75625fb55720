"""JupyterHub for the class on one server: `make hub` (hub/hubctl.py) starts it with this file.

Everything site-specific comes from the settings file that hubctl.py writes
(`$HUB_SETTINGS`, a JSON file in the hub's private state folder): ports, the roster,
where the homes, the exchange and the instructor's course copy are, and the per-role
Jupyter configuration folders. docs/hub.md explains each choice and what a real
deployment changes.

- Accounts: the roster's users are real Linux users (hubctl.py creates them as root);
  nbgrader knows a student by the OS user that submits.
- Log-in: RosterAuthenticator below, one random password per roster user, kept by root
  in the state folder (fit for a test class on loopback; a real class uses its
  university's login, see docs/hub.md).
- Servers: LocalProcessSpawner, `jupyterhub-singleuser` of the course's .venv, run as
  the user, JupyterLab by default.
- nbgrader: "one class, one grader" of nbgrader's JupyterHub guide. The formgrader runs
  on the instructor's own server, on the course copy in the instructor's home; students
  get the assignment list and Validate, not the formgrader or Create Assignment.
- Formgrader iframe (JupyterHub >= 4.1 sends `frame-ancestors 'none'`, nbgrader #1870):
  per-user subdomains of `localhost` (`enable_subdomains`), so every user's server is an
  origin of its own and `frame-ancestors 'self'` can safely be restored, as nbgrader's
  documentation recommends. Browsers resolve `*.localhost` to the loopback address.
"""
import csv
import hmac
import json
import os

from jupyterhub.auth import Authenticator
from traitlets import Dict

c = get_config()  # noqa: F821  (provided by traitlets)

with open(os.environ["HUB_SETTINGS"], encoding="utf-8") as f:
    S = json.load(f)

with open(S["roster"], newline="", encoding="utf-8") as f:
    ROSTER = {row["username"].strip(): row["role"].strip() for row in csv.DictReader(f)}
INSTRUCTORS = {user for user, role in ROSTER.items() if role == "instructor"}


class RosterAuthenticator(Authenticator):
    """Users of the roster only, each with the password hubctl.py generated for them."""

    passwords = Dict(help="username -> password (read from the root-only logins file)").tag(config=True)

    async def authenticate(self, handler, data):
        user = (data.get("username") or "").strip()
        expected = self.passwords.get(user)
        if expected and hmac.compare_digest(expected.encode(), (data.get("password") or "").encode()):
            return user
        return None


with open(S["logins"], newline="", encoding="utf-8") as f:
    PASSWORDS = {row["username"]: row["password"] for row in csv.DictReader(f)}

c.JupyterHub.authenticator_class = RosterAuthenticator
c.RosterAuthenticator.passwords = PASSWORDS
c.Authenticator.allowed_users = set(ROSTER)
c.Authenticator.admin_users = INSTRUCTORS

# --- Network: loopback only -------------------------------------------------------------
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = S["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = S["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{S['proxy_api_port']}"
c.ConfigurableHTTPProxy.command = [S["proxy"]]
c.ConfigurableHTTPProxy.pid_file = os.path.join(S["hub_dir"], "proxy.pid")
# Every user's server on a subdomain of its own: http://<user>.localhost:<port>/user/<user>/
c.JupyterHub.subdomain_host = f"http://localhost:{S['port']}"

# --- State that must survive a restart (hubctl.py stop / start) --------------------------
c.JupyterHub.db_url = "sqlite:///" + os.path.join(S["hub_dir"], "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(S["hub_dir"], "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops the users' servers (their files stay)

# --- Single-user servers ---------------------------------------------------------------
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [os.path.join(S["venv_bin"], "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 180  # JupyterLab with torch on a busy 2-core machine
c.Spawner.http_timeout = 180


def pre_spawn_hook(spawner):
    """Each role gets its Jupyter configuration folder (nbgrader, extensions, CSP)."""
    role = "instructor" if spawner.user.name in INSTRUCTORS else "student"
    spawner.environment.update({
        "JUPYTER_CONFIG_PATH": S["config_dirs"][role],
        "PATH": f"{S['venv_bin']}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
    })


c.Spawner.pre_spawn_hook = pre_spawn_hook
