//! How build events reach a person or a program: JSON lines (`--json-logs`), a live progress display
//! on a terminal, or plain lines otherwise.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use kiln_builder::{Event, EventSink};

pub enum Output {
    Json,
    Terminal(ProgressBar),
    Plain,
}

impl Output {
    pub fn new(json: bool) -> Self {
        if json {
            Output::Json
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            Output::Terminal(bar)
        } else {
            Output::Plain
        }
    }

    pub fn finish(&self) {
        if let Output::Terminal(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl EventSink for Output {
    fn emit(&mut self, event: Event) {
        match self {
            Output::Json => {
                let mut out = std::io::stdout().lock();
                let _ = serde_json::to_writer(&mut out, &event);
                let _ = out.write_all(b"\n");
                let _ = out.flush();
            }
            Output::Terminal(bar) => {
                let line = event.message.trim_end();
                let short: String = line.chars().take(100).collect();
                bar.set_message(format!("[{}] {short}", event.phase.as_str()));
                bar.println(format!("[{}] {line}", event.phase.as_str()));
            }
            Output::Plain => eprintln!("[{}] {}", event.phase.as_str(), event.message.trim_end()),
        }
    }
}
