"""A DOI resolver and an InvenioRDM (Zenodo) installation on loopback, standing in for doi.org and
zenodo.org, which this machine cannot reach. It answers the documented API shapes from a site file
the test writes.

Usage: python3 tests/services/records.py PORT SITE_DIR

SITE_DIR/site.json:
  {"dois": {"10.5281/zenodo.123": "http://127.0.0.1:PORT/records/123", ...},
   "records": {"123": {"status": 200,            # 404, 410 (withdrawn), 403 (restricted), 503
                       "files_status": 200,      # the file listing's status
                       "created": "2024-05-06T07:08:09+00:00",
                       "files": [{"key": "repo.zip", "path": "files/repo.zip",
                                  "md5": "..."   # optional: overrides the real checksum
                                  "url": "..."   # optional: overrides the content link
                                 }]}},
   "figshare": {"42": {"versions": {"1": {"files": [{"name": "verify", "path": "files/verify",
                                                     "link_only": false}]}}}},
   "dataverse": {"doi:10.7910/DVN/ABC": {"major": 1, "minor": 0,
                 "files": [{"label": "requirements.txt", "directory": "binder",
                            "path": "files/requirements.txt", "restricted": false}]}},
   "fail_first": 0}                              # answer 503 to that many requests first

Routes:
  GET /api/handles/<doi>                     the DOI handle API: {"responseCode": 1, "values": [...]}
  GET /api/records/<id>                      the record's metadata, with links.files
  GET /api/records/<id>/files                {"entries": [{key, size, checksum: "md5:..", links.content}]}
  GET /api/records/<id>/files/<key>/content  the file's bytes
  GET /v2/articles/<id>/versions            Figshare: the article's versions
  GET /v2/articles/<id>/versions/<n>        Figshare: that version, with its files
  GET /figshare-files/<id>/<n>/<name>       Figshare: a file's bytes
  GET /api/datasets/:persistentId?persistentId=<pid>   Dataverse: the latest version and its files
  GET /api/access/datafile/<n>?format=original          Dataverse: a file's bytes
  GET /api/1/revision/<hash>/                Software Heritage: a revision's directory
  POST|GET /api/1/vault/flat/<SWHID>/        the vault: "pending" at first, then "done" with fetch_url
  GET /api/1/vault/flat/<SWHID>/raw/         the bundle (site "swh": {"dirs": {hash: path of a tar.gz}})
  GET /api/3/action/package_show?id=<id>     CKAN: the dataset (site "ckan": {id: {"modified": ..,
                                             "resources": [{"name", "path"}], "activities": {..}}})
  GET /api/3/action/activity_show?id=<a>&include_data=true   CKAN: the dataset at that activity
  GET /ckan-files/<id>/<name>                CKAN: a resource's bytes
  GET /hsapi/resource/<id>/sysmeta/          HydroShare: {"date_last_updated": ...}
  GET /django_s3/download/bags/<id>.zip      HydroShare: 202 at first (the bag is being made),
                                             then the bag (site "hydroshare": {id: {"updated", "bag"}})
  GET /redirect?to=URL                       302 to URL
Every request is appended to SITE_DIR/requests.log as `STATUS PATH`.
"""

import hashlib
import http.server
import json
import os
import sys
import urllib.parse

port, site_dir = int(sys.argv[1]), sys.argv[2]
base = f"http://127.0.0.1:{port}"
failures_left = None


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body=b"", content_type="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        with open(os.path.join(site_dir, "requests.log"), "a") as log:
            log.write(f"{status} {self.path}\n")

    def do_POST(self):
        self.do_GET()

    def do_GET(self):
        global failures_left
        with open(os.path.join(site_dir, "site.json")) as f:
            site = json.load(f)
        if failures_left is None:
            failures_left = site.get("fail_first", 0)
        if failures_left > 0:
            failures_left -= 1
            return self.answer(503, {"message": "try again"})
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:1] == ["redirect"]:
            to = urllib.parse.parse_qs(url.query)["to"][0]
            return self.answer(302, headers=[("Location", to)])
        if parts[:3] == ["v2", "articles"] or (parts[:2] == ["v2", "articles"]):
            article = site.get("figshare", {}).get(parts[2]) if len(parts) > 2 else None
            if article is None:
                return self.answer(404, {"message": "Entity not found: article"})
            if len(parts) == 4 and parts[3] == "versions":
                return self.answer(
                    200,
                    [{"version": int(v), "url": f"{base}/v2/articles/{parts[2]}/versions/{v}"}
                     for v in article["versions"]],
                )
            if len(parts) == 5 and parts[3] == "versions":
                version = article["versions"].get(parts[4])
                if version is None:
                    return self.answer(404, {"message": "Entity not found: version"})
                files = []
                for f in version["files"]:
                    with open(os.path.join(site_dir, f["path"]), "rb") as content:
                        data = content.read()
                    files.append({
                        "id": len(files) + 1,
                        "name": f["name"],
                        "size": len(data),
                        "is_link_only": f.get("link_only", False),
                        "download_url": f"{base}/figshare-files/{parts[2]}/{parts[4]}/{f['name']}",
                        "computed_md5": f.get("md5", hashlib.md5(data).hexdigest()),
                    })
                return self.answer(200, {"id": int(parts[2]), "version": int(parts[4]), "files": files,
                                         "published_date": "2023-03-04T05:06:07Z"})
        if parts[:1] == ["figshare-files"] and len(parts) == 4:
            version = site["figshare"][parts[1]]["versions"][parts[2]]
            for f in version["files"]:
                if f["name"] == parts[3] and not f.get("link_only"):
                    with open(os.path.join(site_dir, f["path"]), "rb") as content:
                        return self.answer(200, content.read(), "application/octet-stream")
        if parts[:3] == ["api", "datasets", ":persistentId"]:
            pid = urllib.parse.parse_qs(url.query).get("persistentId", [""])[0]
            dataset = site.get("dataverse", {}).get(pid)
            if dataset is None:
                return self.answer(404, {"status": "ERROR", "message": f"Dataset with Persistent ID {pid} not found."})
            files = []
            for i, f in enumerate(dataset["files"]):
                with open(os.path.join(site_dir, f["path"]), "rb") as content:
                    data = content.read()
                entry = {"label": f["label"], "restricted": f.get("restricted", False),
                         "dataFile": {"id": 1000 + i, "filename": f["label"], "filesize": len(data),
                                      "md5": f.get("md5", hashlib.md5(data).hexdigest())}}
                if f.get("directory"):
                    entry["directoryLabel"] = f["directory"]
                files.append(entry)
            return self.answer(200, {"status": "OK", "data": {"id": 7, "latestVersion": {
                "versionNumber": dataset["major"], "versionMinorNumber": dataset["minor"],
                "versionState": "RELEASED", "releaseTime": "2022-01-02T03:04:05Z", "files": files}}})
        if parts[:3] == ["api", "access", "datafile"] and len(parts) == 4:
            index = int(parts[3]) - 1000
            for dataset in site.get("dataverse", {}).values():
                if 0 <= index < len(dataset["files"]):
                    f = dataset["files"][index]
                    if f.get("restricted"):
                        return self.answer(403, {"status": "ERROR"})
                    with open(os.path.join(site_dir, f["path"]), "rb") as content:
                        return self.answer(200, content.read(), "application/octet-stream")
        if parts[:3] == ["api", "1", "revision"] and len(parts) == 4:
            revision = site.get("swh", {}).get("revisions", {}).get(parts[3])
            if revision is None:
                return self.answer(404, {"exception": "NotFoundExc"})
            return self.answer(200, {"id": parts[3], "directory": revision,
                                     "date": "2021-02-03T04:05:06+00:00"})
        if parts[:4] == ["api", "1", "vault", "flat"] and len(parts) >= 5:
            swhid = parts[4]
            directory = swhid.rsplit(":", 1)[-1]
            bundle = site.get("swh", {}).get("dirs", {}).get(directory)
            if bundle is None:
                return self.answer(404, {"exception": "NotFoundExc"})
            vault = f"{base}/api/1/vault/flat/{swhid}/"
            if len(parts) == 6 and parts[5] == "raw":
                with open(os.path.join(site_dir, bundle), "rb") as content:
                    return self.answer(200, content.read(), "application/gzip")
            asked = os.path.join(site_dir, f"cooked-{directory}")
            if self.command == "POST" and not os.path.exists(asked):
                open(asked, "w").close()
                return self.answer(200, {"status": "pending", "swhid": swhid, "progress_message": "cooking"})
            return self.answer(200, {"status": "done", "swhid": swhid, "fetch_url": vault + "raw/"})
        if parts[:3] == ["api", "3", "action"] and len(parts) == 4:
            query = urllib.parse.parse_qs(url.query)
            ckan = site.get("ckan", {})
            def package(name, dataset):
                return {"id": name, "name": name, "metadata_modified": dataset["modified"],
                        "resources": [{"id": str(i), "name": r["name"],
                                       "url": f"{base}/ckan-files/{name}/{r['name']}"}
                                      for i, r in enumerate(dataset["resources"])]}
            if parts[3] == "package_show":
                name = query.get("id", [""])[0]
                if name not in ckan:
                    return self.answer(404, {"success": False, "error": {"message": "Not found"}})
                return self.answer(200, {"success": True, "result": package(name, ckan[name])})
            if parts[3] == "activity_show":
                activity = query.get("id", [""])[0]
                for name, dataset in ckan.items():
                    if activity in dataset.get("activities", {}):
                        return self.answer(200, {"success": True, "result": {"id": activity, "data": {
                            "package": package(name, dataset["activities"][activity])}}})
                return self.answer(404, {"success": False, "error": {"message": "Not found"}})
        if parts[:1] == ["ckan-files"] and len(parts) == 3:
            dataset = site.get("ckan", {}).get(parts[1], {})
            versions = [dataset] + list(dataset.get("activities", {}).values())
            for version in versions:
                for r in version.get("resources", []):
                    if r["name"] == parts[2]:
                        with open(os.path.join(site_dir, r["path"]), "rb") as content:
                            return self.answer(200, content.read(), "application/octet-stream")
        if parts[:2] == ["hsapi", "resource"] and len(parts) == 4 and parts[3] == "sysmeta":
            resource = site.get("hydroshare", {}).get(parts[2])
            if resource is None:
                return self.answer(404, {"detail": "No resource was found"})
            return self.answer(200, {"resource_id": parts[2], "date_last_updated": resource["updated"]})
        if parts[:3] == ["django_s3", "download", "bags"] and len(parts) == 4:
            rid = parts[3].removesuffix(".zip")
            resource = site.get("hydroshare", {}).get(rid)
            if resource is None:
                return self.answer(404, {"detail": "No resource was found"})
            asked = os.path.join(site_dir, f"bag-{rid}")
            if not os.path.exists(asked):
                open(asked, "w").close()
                return self.answer(202, b"<html>Your bag is being prepared</html>", "text/html")
            with open(os.path.join(site_dir, resource["bag"]), "rb") as content:
                return self.answer(200, content.read(), "application/zip")
        if parts[:2] == ["api", "handles"]:
            doi = "/".join(parts[2:])
            landing = site["dois"].get(doi)
            if landing is None:
                return self.answer(404, {"responseCode": 100, "handle": doi})
            return self.answer(
                200,
                {
                    "responseCode": 1,
                    "handle": doi,
                    "values": [
                        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin"}},
                        {"index": 1, "type": "URL", "data": {"format": "string", "value": landing}},
                    ],
                },
            )
        if parts[:2] == ["api", "records"] and len(parts) >= 3:
            record = site["records"].get(parts[2])
            if record is None:
                return self.answer(404, {"status": 404, "message": "PID does not exist."})
            status = record.get("status", 200)
            if status != 200:
                return self.answer(status, {"status": status, "message": "not available"})
            api = f"{base}/api/records/{parts[2]}"
            if len(parts) == 3:
                return self.answer(
                    200,
                    {
                        "id": parts[2],
                        "created": record.get("created", "2024-05-06T07:08:09+00:00"),
                        "links": {"self": api, "files": f"{api}/files"},
                        "metadata": {"title": f"Record {parts[2]}"},
                    },
                )
            if len(parts) == 4 and parts[3] == "files":
                files_status = record.get("files_status", 200)
                if files_status != 200:
                    return self.answer(files_status, {"status": files_status})
                entries = []
                for f in record["files"]:
                    with open(os.path.join(site_dir, f["path"]), "rb") as content:
                        data = content.read()
                    key = urllib.parse.quote(f["key"], safe="")
                    entries.append(
                        {
                            "key": f["key"],
                            "size": len(data),
                            "checksum": "md5:" + f.get("md5", hashlib.md5(data).hexdigest()),
                            "links": {"content": f.get("url", f"{api}/files/{key}/content")},
                        }
                    )
                return self.answer(200, {"entries": entries, "enabled": True})
            if len(parts) >= 6 and parts[3] == "files" and parts[-1] == "content":
                key = "/".join(parts[4:-1])
                for f in record["files"]:
                    if f["key"] == key:
                        with open(os.path.join(site_dir, f["path"]), "rb") as content:
                            return self.answer(200, content.read(), "application/octet-stream")
        return self.answer(404, {"status": 404})

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
