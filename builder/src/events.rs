//! Build events: one stream of `{phase, message, ...}` for the CLI, the JSON logs and (later) the API.
//! Phases are BinderHub's.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Waiting,
    Fetching,
    Building,
    Pushing,
    Built,
    Launching,
    Ready,
    Failed,
    /// A phase this version does not know (an event stored by a newer kiln, say): BinderHub's
    /// `unknown`, which clients show as a log line.
    #[serde(other)]
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Fetching => "fetching",
            Phase::Building => "building",
            Phase::Pushing => "pushing",
            Phase::Built => "built",
            Phase::Launching => "launching",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
            Phase::Unknown => "unknown",
        }
    }
}

/// One event. `message` is a line for people (it ends with a newline, as BinderHub's do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub phase: Phase,
    pub message: String,
    /// The image, on `built` (and on `ready` for `build_only`).
    #[serde(rename = "imageName", skip_serializing_if = "Option::is_none", default)]
    pub image_name: Option<String>,
    /// A hub's spawn progress (0 to 100), on `launching` events relayed from it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub progress: Option<u64>,
    /// On `failed`: the HTTP status that says what kind of failure it was (400 a bad request, 403
    /// refused, 404 not found, 429 a limit, 500 a failed build or launch), as BinderHub sends it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_code: Option<u16>,
    /// On `built`: the digest of the image's record of what it holds (kiln's schema), as its label
    /// `io.kiln.contents.digest` gives it.
    #[serde(
        rename = "contentsDigest",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub contents_digest: Option<String>,
    /// On `built`: the digest of the image's CycloneDX SBOM (the blob attached beside it).
    #[serde(
        rename = "sbomDigest",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub sbom_digest: Option<String>,
    /// Where the session is, on `ready` after a launch.
    #[serde(flatten, default)]
    pub ready: Option<Ready>,
}

/// What a `ready` event tells about a launched session: BinderHub's fields.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The server's URL, ending in `/`.
    pub url: String,
    /// The token that opens it.
    pub token: String,
    pub image: String,
    pub repo_url: String,
    pub binder_ref_url: String,
    pub binder_launch_host: String,
    pub binder_request: String,
    pub binder_persistent_request: String,
    /// On a hub: milliseconds from the spawn request to the hub reporting the server ready.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hub_spawn_ms: Option<u64>,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("image", &self.image)
            .field("repo_url", &self.repo_url)
            .finish_non_exhaustive()
    }
}

impl Event {
    pub fn new(phase: Phase, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        Event {
            phase,
            message,
            image_name: None,
            progress: None,
            status_code: None,
            contents_digest: None,
            sbom_digest: None,
            ready: None,
        }
    }

    pub fn built(image_name: &str, message: impl Into<String>) -> Self {
        Event {
            image_name: Some(image_name.to_string()),
            ..Event::new(Phase::Built, message)
        }
    }

    /// `launching`, with a hub's progress when it gives one.
    pub fn launching(message: impl Into<String>, progress: Option<u64>) -> Self {
        Event {
            progress,
            ..Event::new(Phase::Launching, message)
        }
    }

    /// `ready` for a launched session.
    pub fn ready(ready: Ready) -> Self {
        let message = format!("server running at {}", ready.url);
        Event {
            ready: Some(ready),
            ..Event::new(Phase::Ready, message)
        }
    }

    /// `ready` without a launch (`build_only`): the image is there.
    pub fn ready_built(image_name: &str, message: impl Into<String>) -> Self {
        Event {
            image_name: Some(image_name.to_string()),
            ..Event::new(Phase::Ready, message)
        }
    }

    /// `failed`, with the status that says what kind of failure.
    pub fn failed(status_code: u16, message: impl Into<String>) -> Self {
        Event {
            status_code: Some(status_code),
            ..Event::new(Phase::Failed, message)
        }
    }
}

/// Where events go.
pub trait EventSink: Send {
    fn emit(&mut self, event: Event);
}

impl<F: FnMut(Event) + Send> EventSink for F {
    fn emit(&mut self, event: Event) {
        self(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_binderhub_sends_them() {
        let built = serde_json::to_value(Event::built("i:1", "Built i:1")).unwrap();
        assert_eq!(
            built,
            serde_json::json!({"phase": "built", "message": "Built i:1\n", "imageName": "i:1"})
        );
        let ready = Event::ready(Ready {
            url: "http://h/user/u/".into(),
            token: "t".into(),
            image: "i:1".into(),
            repo_url: "https://r".into(),
            binder_ref_url: "https://r".into(),
            binder_launch_host: "http://k/".into(),
            binder_request: "v2/gh/o/r/HEAD".into(),
            binder_persistent_request: "v2/gh/o/r/abc".into(),
            hub_spawn_ms: None,
        });
        let json = serde_json::to_value(&ready).unwrap();
        assert_eq!(json["phase"], "ready");
        assert_eq!(json["url"], "http://h/user/u/");
        assert_eq!(json["token"], "t");
        assert!(json.get("hub_spawn_ms").is_none());
        assert!(json.get("ready").is_none(), "flattened: {json}");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, ready);
        let plain: Event =
            serde_json::from_value(serde_json::json!({"phase": "building", "message": "x"}))
                .unwrap();
        assert_eq!(plain.ready, None);
        assert!(!format!("{ready:?}").contains("token: \"t\""));
    }

    #[test]
    fn failures_carry_a_status_code_and_unknown_phases_are_kept() {
        let failed = serde_json::to_value(Event::failed(404, "no such ref")).unwrap();
        assert_eq!(
            failed,
            serde_json::json!({"phase": "failed", "message": "no such ref\n", "status_code": 404})
        );
        let other: Event =
            serde_json::from_value(serde_json::json!({"phase": "frobbing", "message": "x\n"}))
                .unwrap();
        assert_eq!(other.phase, Phase::Unknown);
        assert_eq!(serde_json::to_value(&other).unwrap()["phase"], "unknown");
    }
}
