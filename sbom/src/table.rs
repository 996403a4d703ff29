//! Plain aligned tables (comfy-table, no borders, no terminal detection, no trailing spaces), and
//! [`table`], the listing of one record's packages (`kiln sbom --format table`).

use comfy_table::{Table, presets};

use crate::record::Contents;

/// Columns separated by two spaces, the header first.
pub(crate) fn render<const N: usize>(header: &[&str; N], rows: Vec<[String; N]>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.to_vec());
    for r in rows {
        t.add_row(r.to_vec());
    }
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i + 1 == N { 0 } else { 2 }));
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// Every package of `record`: manager, environment, name and version, one a row, ordered by
/// manager, environment and name.
pub fn table(record: &Contents) -> String {
    let rows: Vec<[String; 4]> = record
        .entries()
        .into_iter()
        .map(|e| {
            [
                e.manager.to_string(),
                e.environment.unwrap_or_default(),
                e.name,
                e.version,
            ]
        })
        .collect();
    render(&["MANAGER", "ENVIRONMENT", "PACKAGE", "VERSION"], rows)
}

/// Bytes in binary units, one decimal (`1.5 GiB`).
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned_without_trailing_spaces() {
        let t = render(
            &["A", "LONGER", "C"],
            vec![
                ["x".into(), "y".into(), "z".into()],
                ["wide cell".into(), "".into(), "last".into()],
            ],
        );
        assert_eq!(
            t,
            "A          LONGER  C\nx          y       z\nwide cell          last\n"
        );
    }

    #[test]
    fn byte_sizes_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
