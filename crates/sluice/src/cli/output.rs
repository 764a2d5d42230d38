//! Rendering helpers: aligned tables, JSON, and stdout writes that surface closed pipes.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use comfy_table::{presets, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// Renders rows as left-aligned columns separated by two spaces (no borders, no trailing
/// spaces). Widths are display widths (CJK and emoji count double); on a terminal, long cells
/// wrap to fit its width, while piped output keeps one line per row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    for row in rows {
        t.add_row(row.iter().take(cols));
    }
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i + 1 < cols { 2 } else { 0 }));
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// A progress bar on stderr for an operation of `len` steps, drawn only when stderr is a
/// terminal (hidden otherwise, so pipes and scripts see nothing).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        .with_finish(ProgressFinish::AndClear);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

/// Writes `text` to stdout and flushes.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}

/// Prints a JSON value, pretty, followed by a newline.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(value).context("rendering JSON")?;
    s.push('\n');
    print(&s)
}

/// Formats a topic id the way Kafka's tools print it: URL-safe base64 without padding.
pub fn topic_id(id: &sluice_client::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Interprets `\t`, `\n`, `\r` and `\\` in a separator typed on the command line.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Formats broker ids as "1,2,3".
pub fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "PARTITIONS"],
            &[
                vec!["a".into(), "3".into()],
                vec!["longer-name".into(), "12".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME         PARTITIONS\na            3\nlonger-name  12\n"
        );
    }

    #[test]
    fn table_uses_display_width_and_keeps_columns() {
        // Wide characters take two columns; extra cells are dropped; no trailing spaces.
        let t = table(
            &["A", "B"],
            &[
                vec!["日本".into(), "x".into(), "extra".into()],
                vec!["z".into(), "".into()],
            ],
        );
        assert_eq!(t, "A     B\n日本  x\nz\n");
    }

    #[test]
    fn progress_is_hidden_without_a_terminal() {
        // cargo test captures stderr, so the bar must not draw.
        if !std::io::stderr().is_terminal() {
            assert!(progress(3, "test").is_hidden());
        }
    }

    #[test]
    fn table_without_rows_has_header_only() {
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
    }

    #[test]
    fn topic_ids_use_kafka_base64() {
        // Kafka prints 9c3662a0-88e5-4ce0-bad8-e603fdcfd231 as nDZioIjlTOC62OYD_c_SMQ.
        let id = sluice_client::Uuid::parse_str("9c3662a0-88e5-4ce0-bad8-e603fdcfd231").unwrap();
        assert_eq!(topic_id(&id), "nDZioIjlTOC62OYD_c_SMQ");
        assert_eq!(
            topic_id(&sluice_client::Uuid::nil()),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
    }

    #[test]
    fn separators_unescape() {
        assert_eq!(unescape("\\t"), "\t");
        assert_eq!(unescape("a\\nb"), "a\nb");
        assert_eq!(unescape("\\\\"), "\\");
        assert_eq!(unescape("\\x"), "\\x");
        assert_eq!(unescape("::"), "::");
        assert_eq!(unescape("\\"), "\\");
    }

    #[test]
    fn ids_join() {
        assert_eq!(ids(&[1, 2, 3]), "1,2,3");
        assert_eq!(ids(&[]), "");
    }
}
