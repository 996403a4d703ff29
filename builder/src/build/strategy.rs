//! The decision of how an image comes to be, as data: a pure function from what is known once the
//! repository is planned to a [`Strategy`].

use super::Outcome;

/// What is known when the decision is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The image goes to a registry.
    pub pushing: bool,
    /// Environment images may be reused natively (not `--no-native`).
    pub native: bool,
    /// `--no-cache`: nothing is reused.
    pub no_cache: bool,
    /// The image already exists under its name (a local folder is named after its content; a
    /// commit's image was looked for before the fetch).
    pub image_exists: bool,
    /// The plan has an environment key (not a repository Dockerfile).
    pub has_environment: bool,
    /// The registry has the environment image of that key.
    pub environment_in_registry: bool,
    /// Steps after the repository copy need a container (`postBuild`, `pip install .`).
    pub steps_after_copy: bool,
    /// The plan has a conda environment (installed natively before the engine build).
    pub conda: bool,
}

/// How the image is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// It exists: nothing to do.
    Reuse,
    /// The environment image plus one repository layer, assembled in the registry.
    Assemble,
    /// A short engine build of what follows the environment, on the environment image.
    OnEnvironment,
    /// The engine builds the image.
    Full {
        /// The conda layers are installed natively first and the environment stage starts on them.
        conda_stage: bool,
        /// The environment stage is built and pushed on its own, for later reuse.
        environment_stage: bool,
        /// The image is pushed.
        push: bool,
    },
}

impl Strategy {
    pub fn outcome(self) -> Outcome {
        match self {
            Strategy::Reuse => Outcome::Reused,
            Strategy::Assemble => Outcome::Assembled,
            Strategy::OnEnvironment => Outcome::BuiltOnEnvironment,
            Strategy::Full { .. } => Outcome::Built,
        }
    }
}

/// The decision. Without a registry, an engine build always runs (the engine's layer cache makes
/// it quick when little changed); with one, the environment image is reused whenever it exists.
pub fn decide(facts: &Facts) -> Strategy {
    if facts.image_exists && !facts.no_cache {
        return Strategy::Reuse;
    }
    if facts.pushing && facts.native && facts.environment_in_registry {
        return if facts.steps_after_copy || facts.no_cache {
            Strategy::OnEnvironment
        } else {
            Strategy::Assemble
        };
    }
    Strategy::Full {
        conda_stage: facts.conda,
        environment_stage: facts.pushing && facts.native && facts.has_environment,
        push: facts.pushing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushing() -> Facts {
        Facts {
            pushing: true,
            native: true,
            has_environment: true,
            ..Facts::default()
        }
    }

    #[test]
    fn an_existing_image_is_reused_unless_no_cache() {
        let facts = Facts {
            image_exists: true,
            ..pushing()
        };
        assert_eq!(decide(&facts), Strategy::Reuse);
        let local = Facts {
            image_exists: true,
            ..Facts::default()
        };
        assert_eq!(decide(&local), Strategy::Reuse);
        assert!(matches!(
            decide(&Facts {
                no_cache: true,
                ..facts
            }),
            Strategy::OnEnvironment | Strategy::Full { .. }
        ));
    }

    #[test]
    fn a_code_only_change_is_assembled_natively() {
        let facts = Facts {
            environment_in_registry: true,
            ..pushing()
        };
        assert_eq!(decide(&facts), Strategy::Assemble);
    }

    #[test]
    fn steps_after_the_copy_build_on_the_environment() {
        let facts = Facts {
            environment_in_registry: true,
            steps_after_copy: true,
            ..pushing()
        };
        assert_eq!(decide(&facts), Strategy::OnEnvironment);
        let no_cache = Facts {
            environment_in_registry: true,
            no_cache: true,
            ..pushing()
        };
        assert_eq!(decide(&no_cache), Strategy::OnEnvironment);
    }

    #[test]
    fn a_new_environment_is_built_and_pushed_as_its_own_stage() {
        assert_eq!(
            decide(&pushing()),
            Strategy::Full {
                conda_stage: false,
                environment_stage: true,
                push: true
            }
        );
        let conda = Facts {
            conda: true,
            ..pushing()
        };
        assert!(matches!(
            decide(&conda),
            Strategy::Full {
                conda_stage: true,
                ..
            }
        ));
    }

    #[test]
    fn no_native_builds_the_whole_image_as_binderhub_does() {
        let facts = Facts {
            native: false,
            environment_in_registry: true,
            ..pushing()
        };
        assert_eq!(
            decide(&facts),
            Strategy::Full {
                conda_stage: false,
                environment_stage: false,
                push: true
            }
        );
    }

    #[test]
    fn without_a_registry_the_engine_builds() {
        let facts = Facts {
            has_environment: true,
            conda: true,
            ..Facts::default()
        };
        assert_eq!(
            decide(&facts),
            Strategy::Full {
                conda_stage: true,
                environment_stage: false,
                push: false
            }
        );
    }

    #[test]
    fn a_dockerfile_has_no_environment_stage() {
        let facts = Facts {
            has_environment: false,
            ..pushing()
        };
        assert_eq!(
            decide(&facts),
            Strategy::Full {
                conda_stage: false,
                environment_stage: false,
                push: true
            }
        );
    }
}
