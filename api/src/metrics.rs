//! Counters for `/metrics`, in Prometheus text format.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters for `/metrics` (Prometheus text format).
#[derive(Default)]
pub struct Metrics {
    pub builds_succeeded: AtomicU64,
    pub builds_failed: AtomicU64,
    pub builds_in_progress: AtomicI64,
    /// Sum of build durations in milliseconds, and their count (for `_sum` and `_count`).
    pub build_ms_sum: AtomicU64,
    pub launches_succeeded: AtomicU64,
    pub launches_failed: AtomicU64,
    pub launch_ms_sum: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let (ok, failed) = (g(&self.builds_succeeded), g(&self.builds_failed));
        let (lok, lfailed) = (g(&self.launches_succeeded), g(&self.launches_failed));
        format!(
            "# HELP kiln_builds_total Builds finished, by status.\n# TYPE kiln_builds_total counter\n\
             kiln_builds_total{{status=\"success\"}} {ok}\nkiln_builds_total{{status=\"failure\"}} {failed}\n\
             # HELP kiln_builds_in_progress Builds running or queued.\n# TYPE kiln_builds_in_progress gauge\n\
             kiln_builds_in_progress {}\n\
             # HELP kiln_build_duration_seconds Time from the start of a build to its end.\n# TYPE kiln_build_duration_seconds summary\n\
             kiln_build_duration_seconds_sum {:.3}\nkiln_build_duration_seconds_count {}\n\
             # HELP kiln_launches_total Launches finished, by status.\n# TYPE kiln_launches_total counter\n\
             kiln_launches_total{{status=\"success\"}} {lok}\nkiln_launches_total{{status=\"failure\"}} {lfailed}\n\
             # HELP kiln_launch_duration_seconds Time from a launch request to a ready session.\n# TYPE kiln_launch_duration_seconds summary\n\
             kiln_launch_duration_seconds_sum {:.3}\nkiln_launch_duration_seconds_count {}\n",
            self.builds_in_progress.load(Ordering::SeqCst),
            g(&self.build_ms_sum) as f64 / 1000.0,
            ok + failed,
            g(&self.launch_ms_sum) as f64 / 1000.0,
            lok + lfailed,
        )
    }
}
