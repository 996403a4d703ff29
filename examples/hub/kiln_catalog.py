"""A kiln community's catalogue in a JupyterHub's spawn form, read from kiln at spawn time.

kiln answers GET <kiln>/communities/<community>/profiles in KubeSpawner's profile_list format (each
entry a profile, its versions the choices of its "image" option, images named by digest). This module
hands that list to the spawner when a user opens the spawn form or starts a server, so a change to the
catalogue (a new version promoted, one deprecated or retired) shows without restarting the hub.

KubeSpawner (jupyterhub_config.py):

    from kiln_catalog import KilnCatalog
    catalog = KilnCatalog("https://kiln.example/", "physics")
    c.KubeSpawner.profile_list = catalog.profile_list

DockerSpawner (this folder's jupyterhub_config.py does this when KILN_CATALOG_COMMUNITY is set):

    KilnCatalog("http://127.0.0.1:8585/", "physics").configure_dockerspawner(c)

which sets the options form (one choice per entry and version), turns the choice into the image, and
restricts allowed_images to the images the catalogue offers now.

If kiln cannot be reached, the last list read is used (and an empty one before the first); answers are
kept for `cache_seconds` (default 5) so that the form and the start agree. Only the standard library is
used.
"""

import asyncio
import html
import json
import logging
import time
import urllib.request

log = logging.getLogger("kiln_catalog")


class KilnCatalog:
    def __init__(self, kiln_url, community, cache_seconds=5.0, timeout=5.0):
        self.url = kiln_url.rstrip("/") + "/communities/%s/profiles" % community
        self.community = community
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._list = []
        self._read_at = None

    def fetch(self):
        """The profile list now (blocking; at most one request per cache_seconds)."""
        now = time.monotonic()
        if self._read_at is not None and now - self._read_at < self.cache_seconds:
            return self._list
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as answer:
                profiles = json.load(answer)
            if not isinstance(profiles, list):
                raise ValueError("not a list")
            self._list = profiles
        except Exception as e:  # kiln down or answering badly: keep the last list
            log.warning("kiln catalogue %s: cannot read %s (%s); using the last list", self.community, self.url, e)
        self._read_at = now
        return self._list

    async def profile_list(self, spawner=None):
        """For KubeSpawner.profile_list: called when the form is shown and at start."""
        return await asyncio.get_running_loop().run_in_executor(None, self.fetch)

    def choices(self):
        """(label, image) for every entry and version offered, the default of each entry first."""
        out = []
        for profile in self.fetch():
            name = profile.get("display_name", "")
            options = profile.get("profile_options", {}).get("image", {}).get("choices", {})
            ordered = sorted(options.values(), key=lambda c: not c.get("default"))
            for choice in ordered:
                image = choice.get("kubespawner_override", {}).get("image")
                if image:
                    out.append(("%s: %s" % (name, choice.get("display_name", "")), image))
        return out

    def options_form(self, spawner):
        """DockerSpawner's form: one radio button per entry and version."""
        rows = []
        for i, (label, image) in enumerate(self.choices()):
            rows.append(
                '<div class="radio"><label><input type="radio" name="image" value="%s"%s> %s</label></div>'
                % (html.escape(image), " checked" if i == 0 else "", html.escape(label))
            )
        if not rows:
            return "<p>No environment is offered yet.</p>"
        return '<div class="kiln-catalog" id="kiln-catalog">%s</div>' % "".join(rows)

    def allowed_images(self, spawner):
        """Exactly the images the catalogue offers now."""
        return {image: image for _, image in self.choices()}

    def configure_dockerspawner(self, c):
        c.DockerSpawner.options_form = self.options_form
        c.DockerSpawner.allowed_images = self.allowed_images
        c.DockerSpawner.options_from_form = lambda form: {"image": form.get("image", [""])[0]}
