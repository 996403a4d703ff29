//! Communities and their curated image catalogues, as data.
//!
//! A community (a course, a lab, a network) is one TOML file in the communities folder
//! ([`load`]): who it is, where its images go, who administers it, its quotas and its catalogue
//! ([`community`], [`entry`]). Each build of an entry is a [`version`]; whether a check builds
//! one is [`version::decide`], a pure function of the entry's policy, its newest version and what
//! the check observed. [`schedule`] says when a check is due (cron, with the time passed in);
//! [`profiles`] turns the offered versions into KubeSpawner's `profile_list`; [`store`] keeps
//! versions, checks, pins and the lease that lets one replica check an entry at a time;
//! [`retention`] chooses the images nobody keeps, for deletion from the registry.
//!
//! Nothing here builds, fetches or talks to a registry: the service (`kiln-api`'s `catalog`)
//! carries out what the decision says.

pub mod community;
pub mod entry;
pub mod load;
pub mod profiles;
pub mod retention;
pub mod schedule;
pub mod store;
pub mod version;

pub use community::Community;
pub use entry::{Entry, Promotion};
pub use load::{FileError, Loaded, load_dir};
pub use schedule::Schedule;
pub use store::{CatalogStore, Check};
pub use version::{Decision, Observed, State, Version, decide};
