# A JupyterHub for kiln on one machine: DockerSpawner runs each session as a container of a kiln image,
# on the host's network (no Docker bridge), and kiln starts servers through the hub's REST API.
#
#   export KILN_HUB_API_TOKEN=$(openssl rand -hex 32)      # shared with `kiln serve`
#   jupyterhub -f examples/hub/jupyterhub_config.py --ip 127.0.0.1 --port 8000
#
# Settings read from the environment (all optional except the token):
#   KILN_HUB_API_TOKEN         the token kiln's service uses (required)
#   KILN_HUB_ALLOWED_IMAGES    comma-separated images or prefixes kiln may start (`*` or unset: any image;
#                              `127.0.0.1:5000/kiln/` allows only images under that prefix)
#   KILN_HUB_STATE             folder for the hub's database and cookie secret (default: the current folder)
#   KILN_HUB_PORT              the hub's own API port (default 8081), KILN_HUB_PROXY_API_PORT the proxy's
#                              API port (default 8001): change both to run a second hub on the machine
#   KILN_HUB_CONTAINER_PREFIX  session containers are named <prefix>-<user> (default jupyter)
#   KILN_HUB_START_TIMEOUT     seconds a server may take to start (default 120)
#   KILN_HUB_HTTP_TIMEOUT      seconds a started server may take to answer (default 60)
#   KILN_HUB_CULL_IDLE         stop servers idle this many seconds (default 3600; 0 = never), needs
#                              jupyterhub-idle-culler
#   KILN_SERVICE_URL           where kiln listens (e.g. http://127.0.0.1:8585): kiln becomes a service of
#                              the hub, proxied at /services/kiln/ and logging people in through the hub
#                              (run kiln with KILN_BASE_URL=/services/kiln/ KILN_HUB_AUTH=1; README,
#                              "Inside a JupyterHub")
#   KILN_HUB_SERVICE_NAME      kiln's service name (default kiln; binder for jupyterhub-fancy-profiles)
#   KILN_HUB_USERS_GROUPS      hub groups to create, `group=user1 user2;group2=user3` (for per-group limits)
#   KILN_CATALOG_COMMUNITY     a kiln community whose catalogue is the spawn form (kiln_catalog.py, README
#                              "Communities"): one choice per entry and version, images by digest, read from
#                              kiln at spawn time; allowed_images becomes exactly those images
#   KILN_CATALOG_URL           where the hub reaches kiln for it (default http://127.0.0.1:8585/)
#
# Security: host networking lets every session reach every loopback service of the host (the hub API, the
# registry, kiln). That is fine for a workstation or a test; a public hub needs isolated networks.
import os
import socket
import sys

from dockerspawner import DockerSpawner

c = get_config()  # noqa: F821 (JupyterHub provides get_config)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HostNetworkDockerSpawner(DockerSpawner):
    """DockerSpawner on the host's network: each server listens on its own free loopback port."""

    network_name = "host"
    use_internal_ip = True
    # Listen on loopback only: on the host's network, 0.0.0.0 would expose the server on every interface.
    ip = "127.0.0.1"

    async def start(self):
        # Every container shares the host's ports: pick a free one per server.
        self.port = free_port()
        return await super().start()

    async def get_ip_and_port(self):
        return ("127.0.0.1", self.port)

    def get_env(self):
        env = super().get_env()
        # kiln hands each launch a hub token that opens only this server, in the URL (`?token=`), as
        # BinderHub's links do. JupyterHub 5 and later ignore URL tokens unless told otherwise.
        env["JUPYTERHUB_ALLOW_TOKEN_IN_URL"] = "1"
        # What BinderHub tells a session about its origin, from the launch's user_options.
        options = self.user_options or {}
        for key, name in [
            ("repo_url", "BINDER_REPO_URL"),
            ("binder_ref_url", "BINDER_REF_URL"),
            ("binder_launch_host", "BINDER_LAUNCH_HOST"),
            ("binder_request", "BINDER_REQUEST"),
            ("binder_persistent_request", "BINDER_PERSISTENT_REQUEST"),
        ]:
            if isinstance(options.get(key), str):
                env[name] = options[key]
        return env


state = os.environ.get("KILN_HUB_STATE", ".")
os.makedirs(state, exist_ok=True)
c.JupyterHub.db_url = "sqlite:///" + os.path.join(state, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(state, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(state, "jupyterhub.pid")
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("KILN_HUB_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%s" % os.environ.get("KILN_HUB_PROXY_API_PORT", "8001")
c.ConfigurableHTTPProxy.pid_file = os.path.join(state, "jupyterhub-proxy.pid")

# Sessions: containers of kiln's images, started with jupyterhub-singleuser (kiln's images pin the
# hub's major version), removed when they stop.
c.JupyterHub.spawner_class = HostNetworkDockerSpawner
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
c.DockerSpawner.remove = True
c.DockerSpawner.prefix = os.environ.get("KILN_HUB_CONTAINER_PREFIX", "jupyter")
c.DockerSpawner.pull_policy = "ifnotpresent"
c.DockerSpawner.start_timeout = int(os.environ.get("KILN_HUB_START_TIMEOUT", "120"))
# How long a started container may take to answer HTTP (a session that exits early fails after this).
c.DockerSpawner.http_timeout = int(os.environ.get("KILN_HUB_HTTP_TIMEOUT", "60"))
allowed = [i.strip() for i in os.environ.get("KILN_HUB_ALLOWED_IMAGES", "*").split(",") if i.strip()]
if not allowed or allowed == ["*"]:
    c.DockerSpawner.allowed_images = "*"
else:
    # A callable gets the requested image: allow exactly the images under the listed prefixes.
    def allowed_images(spawner):
        image = (spawner.user_options or {}).get("image", "")
        return [image] if any(image.startswith(p) for p in allowed) else []

    c.DockerSpawner.allowed_images = allowed_images

if os.environ.get("KILN_CATALOG_COMMUNITY"):
    # The spawn form offers the community's catalogue, and only its images may be started.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from kiln_catalog import KilnCatalog

    KilnCatalog(
        os.environ.get("KILN_CATALOG_URL", "http://127.0.0.1:8585/"), os.environ["KILN_CATALOG_COMMUNITY"]
    ).configure_dockerspawner(c)

# Users: kiln creates a temporary user per anonymous launch, and starts named servers for hub users.
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 5

# kiln's service: create and delete users, start, read and stop their servers, and issue each launch a
# token that opens only that server.
# Its name is kiln unless KILN_HUB_SERVICE_NAME says otherwise: jupyterhub-fancy-profiles looks for
# its builder at /services/binder/, so a hub with fancy-profiles names kiln "binder" (and kiln runs with
# KILN_HUB_SERVICE_NAME=binder KILN_BASE_URL=/services/binder/).
name = os.environ.get("KILN_HUB_SERVICE_NAME", "kiln")
kiln = {"name": name, "api_token": os.environ["KILN_HUB_API_TOKEN"]}
if os.environ.get("KILN_SERVICE_URL"):
    # Proxied at /services/<name>/ (the proxy keeps the prefix: kiln serves under KILN_BASE_URL), and
    # an OAuth client of the hub: client id service-<name>, redirect /services/<name>/oauth_callback
    # (the hub's defaults, which are kiln's), its API token as the secret. Users are not asked to
    # confirm.
    kiln.update(url=os.environ["KILN_SERVICE_URL"], oauth_no_confirm=True, display=True)
c.JupyterHub.services = [kiln]
c.JupyterHub.load_roles = [
    {
        "name": "kiln",
        "services": [name],
        "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "list:users"],
    },
    # Users may use kiln: their tokens carry access:services!service=<name>, which kiln checks
    # before it builds or launches as them (a token that only opens one server, such as a launch's,
    # lacks it).
    {"name": "user", "scopes": ["self", "access:services!service=%s" % name]},
]

groups = {}
for entry in os.environ.get("KILN_HUB_USERS_GROUPS", "").split(";"):
    if "=" in entry:
        group, members = entry.split("=", 1)
        groups[group.strip()] = {"users": members.split()}
if groups:
    c.JupyterHub.load_groups = groups

cull = int(os.environ.get("KILN_HUB_CULL_IDLE", "3600"))
if cull > 0:
    try:
        import jupyterhub_idle_culler  # noqa: F401
    except ImportError:
        print("kiln hub: jupyterhub-idle-culler is not installed; idle servers are not stopped", file=sys.stderr)
    else:
        c.JupyterHub.services.append(
            {
                "name": "idle-culler",
                "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull}", "--remove-named-servers=True"],
            }
        )
        c.JupyterHub.load_roles.append(
            {
                "name": "idle-culler",
                "services": ["idle-culler"],
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            }
        )
