//! `/etc/os-release`: `KEY=value` lines, values in shell quoting.

use crate::error::SbomError;
use crate::record::Os;

pub fn parse(text: &str) -> Result<Os, SbomError> {
    let mut os = Os::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = shlex::split(raw)
            .and_then(|words| words.into_iter().next())
            .unwrap_or_default();
        let value = (!value.is_empty()).then_some(value);
        match key {
            "ID" => os.id = value.unwrap_or_default(),
            "VERSION_ID" => os.version_id = value,
            "VERSION_CODENAME" => os.version_codename = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    if os.id.is_empty() {
        return Err(SbomError::parse("os", None, "os-release has no ID"));
    }
    Ok(os)
}

#[cfg(test)]
mod tests {
    #[test]
    fn os_release_of_debian_bookworm() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n";
        let os = super::parse(text).unwrap();
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.version_codename.as_deref(), Some("bookworm"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }
}
