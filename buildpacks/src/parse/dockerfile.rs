//! A repository `Dockerfile`: only the legacy Binder base image needs recognising.

/// Whether any `FROM` line builds on the retired `andrewosh/binder-base` image.
pub fn is_legacy_binder(text: &str) -> bool {
    text.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
            && words.any(|w| w.contains("andrewosh/binder-base"))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn legacy() {
        assert!(super::is_legacy_binder(
            "# old\nFROM andrewosh/binder-base\n"
        ));
        assert!(!super::is_legacy_binder(
            "FROM python:3.12\nRUN echo andrewosh/binder-base\n"
        ));
    }
}
