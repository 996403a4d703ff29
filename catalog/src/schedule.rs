//! An entry's check schedule: a five-field cron expression in UTC (croner), and whether a check
//! is due at a given time. The time is always passed in, so tests drive the schedule with their
//! own clock.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "schedule {text:?} is not a cron expression (minute hour day-of-month month day-of-week, e.g. \"0 3 * * 1\" for Mondays at 03:00 UTC): {reason}"
)]
pub struct ScheduleError {
    pub text: String,
    pub reason: String,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let error = |reason: String| ScheduleError {
            text: text.to_string(),
            reason,
        };
        // Five fields only: seconds would let one entry ask for a check every second.
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(error(format!("it has {fields} fields, not 5")));
        }
        let cron = Cron::from_str(text).map_err(|e| error(e.to_string()))?;
        Ok(Schedule {
            cron,
            text: text.to_string(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first time after `after` (seconds since the epoch) that the schedule names.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let after = DateTime::<Utc>::from_timestamp(after, 0)?;
        self.cron
            .find_next_occurrence(&after, false)
            .ok()
            .map(|t| t.timestamp())
    }

    /// Whether a check is due at `now`: the schedule named a time after the last check (or after
    /// `since`, when the entry was never checked) that is not later than `now`. Missed times
    /// (the service was down) give one check, not one per missed time.
    pub fn due(&self, last_check: Option<i64>, since: i64, now: i64) -> bool {
        self.next_after(last_check.unwrap_or(since))
            .is_some_and(|next| next <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-07 is a Monday.
    const MONDAY_0300: i64 = 1_796_612_400;

    #[test]
    fn a_weekly_schedule_is_due_once_its_time_has_come() {
        let s = Schedule::parse("0 3 * * 1").unwrap();
        assert_eq!(s.next_after(MONDAY_0300 - 3600), Some(MONDAY_0300));
        // Checked an hour before: not due a minute before the time, due at it and after it.
        let last = Some(MONDAY_0300 - 3600);
        assert!(!s.due(last, 0, MONDAY_0300 - 60));
        assert!(s.due(last, 0, MONDAY_0300));
        assert!(s.due(last, 0, MONDAY_0300 + 86_400));
        // Checked at the time: the next is a week later.
        assert!(!s.due(Some(MONDAY_0300), 0, MONDAY_0300 + 6 * 86_400));
        assert!(s.due(Some(MONDAY_0300), 0, MONDAY_0300 + 7 * 86_400));
    }

    #[test]
    fn a_schedule_that_does_not_parse_says_what_it_wants() {
        for bad in ["every monday", "0 3 * *", "0 0 3 * * 1", "61 * * * *"] {
            let e = Schedule::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("minute hour day-of-month month day-of-week"),
                "{e}"
            );
        }
    }
}
