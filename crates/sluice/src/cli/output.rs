//! Rendering helpers: aligned tables, JSON, and stdout writes that surface closed pipes.

use std::io::Write;

use anyhow::Context;

/// Renders rows as left-aligned columns separated by two spaces (no trailing spaces).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate().take(cols) {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            if i + 1 < cols {
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
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
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
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
