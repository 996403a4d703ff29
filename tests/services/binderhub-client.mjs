// Drives BinderHub's own JavaScript client (@jupyterhub/binderhub-client from npm, the client
// jupyterhub-fancy-profiles uses) against a server, as a browser page would, and prints every event
// it yields as one JSON line, until `ready` or `failed`.
//
//   node binderhub-client.mjs CLIENT_DIR BUILD_URL SPEC [TOKEN] [build_only]
//
// CLIENT_DIR is the folder tests/services/binderhub-client.sh installed the client into; BUILD_URL ends
// in `build/` (such as http://127.0.0.1:8000/services/kiln/build/).
const [clientDir, buildUrl, spec, token, buildOnly] = process.argv.slice(2);

// The client and its event-source library are written for browsers: give them the globals they use.
globalThis.window = globalThis;
globalThis.document = {
  hidden: false,
  cookie: "",
  addEventListener() {},
  removeEventListener() {},
};

const { BinderRepository } = await import(
  clientDir + "/esm/client.mjs"
);
const repo = new BinderRepository(spec, new URL(buildUrl), {
  apiToken: token || undefined,
  buildOnly: buildOnly === "build_only",
});
for await (const event of repo.fetch()) {
  console.log(JSON.stringify(event));
  if (event.phase === "ready" || event.phase === "failed") break;
}
repo.close();
process.exit(0);
