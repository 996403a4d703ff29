//! Nix environments (`default.nix`): Nix installed for the user, the environment built with
//! `nix-shell` after the repository copy, and the command run inside it. As in repo2docker, the
//! environment must provide Jupyter itself.

use std::collections::BTreeMap;

use crate::assemble::{Planner, argv};
use crate::error::PlanError;
use crate::options::NIX_VERSION;
use crate::plan::{GeneratedFile, RunAs, Step};

pub fn plan(p: &mut Planner) -> Result<(), PlanError> {
    let files = p.files;
    let Some(default_nix) = &files.default_nix else {
        unreachable!("the Nix buildpack is selected only with default.nix")
    };
    p.decide(
        "jupyter",
        "from default.nix",
        "a Nix environment provides its own Jupyter, as in repo2docker",
    );
    p.add_base_packages(&["curl", "xz-utils"]);
    let home = p.home();
    p.env.insert(
        "NIX_PATH".into(),
        format!("nixpkgs={home}/.nix-defexpr/channels/nixpkgs"),
    );
    p.env.insert(
        "NIX_SSL_CERT_FILE".into(),
        "/etc/ssl/certs/ca-certificates.crt".into(),
    );
    p.path.insert(0, format!("{home}/.nix-profile/bin"));
    p.generated.push(GeneratedFile {
        dest: "/etc/nix/nix.conf".into(),
        mode: 0o644,
        content: "# kiln: builds run inside a container, which has no room for Nix's sandbox\nsandbox = false\n".into(),
    });
    let nix_dir = p.owned_dir_step("/nix, owned by the user", "/nix");
    p.runtime_steps.push(nix_dir);
    let installer = p.helper("install-nix", include_str!("../scripts/install-nix"));
    p.runtime_steps.push(Step {
        name: format!("Nix {NIX_VERSION} and the nixpkgs-unstable channel"),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![
            vec![installer, NIX_VERSION.to_string()],
            argv(&[
                &format!("{home}/.nix-profile/bin/nix-channel"),
                "--add",
                "https://nixos.org/channels/nixpkgs-unstable",
                "nixpkgs",
            ]),
            argv(&[&format!("{home}/.nix-profile/bin/nix-channel"), "--update"]),
        ],
        env: BTreeMap::new(),
        caches: vec![],
        network: true,
    });
    let in_image = p.in_repo(&default_nix.path);
    p.after_copy.push(Step {
        name: format!("{} (nix-shell builds the environment)", default_nix.path),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![argv(&["nix-shell", &in_image, "--command", "true"])],
        env: BTreeMap::new(),
        caches: vec![],
        network: true,
    });
    p.runtime_env.insert("KILN_NIX_SHELL".into(), in_image);
    Ok(())
}
