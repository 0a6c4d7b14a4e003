//! Writing results: stdout for what a command produces, stderr for messages
//! to the person at the terminal, plus tables, export signatures and the
//! compile spinner.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use vow_runtime::ExportInfo;

/// Writes one line to stdout.
pub(crate) fn line(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// Writes bytes to stdout as they are (a guest's own output).
pub(crate) fn raw(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Writes bytes to stderr as they are.
pub(crate) fn raw_err(bytes: &[u8]) -> std::io::Result<()> {
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(bytes)?;
    stderr.flush()
}

/// Writes one line to stderr, ignoring failures: there is nowhere else to
/// report them.
pub(crate) fn error_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Prints a JSON value, pretty, to stdout.
pub(crate) fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    line(&serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// An export's WIT signature: `request-approval: func(subject: string) -> string`.
pub(crate) fn signature(export: &ExportInfo) -> String {
    let params: Vec<String> = export
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect();
    let results = match export.results.as_slice() {
        [] => String::new(),
        [one] => format!(" -> {one}"),
        many => format!(" -> tuple<{}>", many.join(", ")),
    };
    format!("{}: func({}){results}", export.name, params.join(", "))
}

/// Aligns rows under headers, columns separated by two spaces; the last
/// column is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.pop();
    out
}

/// A size in bytes for people: `812 B`, `17.5 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A spinner on stderr while something slow runs; nothing when stderr is
/// not a terminal, so logs and test output stay clean.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub(crate) fn start(message: String) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vow_runtime::ParamInfo;

    #[test]
    fn signatures_read_like_wit() {
        let export = ExportInfo {
            name: "request-approval".into(),
            params: vec![ParamInfo {
                name: "subject".into(),
                ty: "string".into(),
            }],
            results: vec!["string".into()],
        };
        assert_eq!(
            signature(&export),
            "request-approval: func(subject: string) -> string"
        );
        let export = ExportInfo {
            name: "tick".into(),
            params: vec![],
            results: vec![],
        };
        assert_eq!(signature(&export), "tick: func()");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_owned(), "pending".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "done".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["ID", "STATUS", "NOTE"], &rows),
            "ID    STATUS   NOTE\na     pending  x\nbbbb  done"
        );
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(812), "812 B");
        assert_eq!(size(18_353_969), "17.5 MiB");
    }
}
