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
        }
    }
}

/// One event. `message` is a line for people (it ends with a newline, as BinderHub's do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub phase: Phase,
    pub message: String,
    #[serde(rename = "imageName", skip_serializing_if = "Option::is_none", default)]
    pub image_name: Option<String>,
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
        }
    }

    pub fn built(image_name: &str, message: impl Into<String>) -> Self {
        Event {
            image_name: Some(image_name.to_string()),
            ..Event::new(Phase::Built, message)
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
