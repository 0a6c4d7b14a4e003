//! `--watch`: a listing redrawn in place every interval until Ctrl-C, as
//! `watch(1)` does, for people who live in a terminal.
//!
//! On a terminal each round moves the cursor home and overwrites the last
//! frame line by line, clipped to the window, so the list does not flicker
//! or scroll away. When stdout is not a terminal (a pipe, a file, a test)
//! each round is printed after the last one, with no escape codes: a title
//! line, the listing, an empty line. A round that fails (the server is
//! away) shows the error and the next round tries again.

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, SystemTime};

/// Moves the cursor to the top left corner.
const HOME: &str = "\x1b[H";
/// Clears the rest of the line.
const CLEAR_LINE: &str = "\x1b[K";
/// Clears from the cursor to the end of the screen.
const CLEAR_BELOW: &str = "\x1b[J";

/// Shows what `render` gives every `interval` until Ctrl-C; `what` names
/// the listing in the title line (`vow promise list --status pending`).
pub(crate) async fn watch<F, Fut>(
    what: &str,
    interval: Duration,
    mut render: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<String>>,
{
    let terminal = std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = ticks.tick() => {}
        }
        // Ctrl-C also ends a round that waits on a server that does not
        // answer.
        let body = tokio::select! {
            _ = &mut stop => return Ok(()),
            body = render() => match body {
                Ok(body) => body,
                Err(error) => format!("error: {error:#}"),
            },
        };
        let title = title(what, interval, SystemTime::now());
        let text = if terminal {
            let (rows, columns) = console::Term::stdout().size();
            frame(&title, &body, rows, columns)
        } else {
            format!("{title}\n\n{body}\n\n")
        };
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
    }
}

/// `Every 2s: vow promise list   2026-01-31T12:00:00Z`.
fn title(what: &str, interval: Duration, now: SystemTime) -> String {
    format!(
        "Every {}: {what}   {}",
        humantime::format_duration(interval),
        humantime::format_rfc3339_seconds(now)
    )
}

/// One screen: the title, an empty line and the body, each line cut to
/// `columns` characters and cleared to its end, the body cut to the rows
/// left (the last row saying how many lines did not fit), and the rest of
/// the screen cleared.
fn frame(title: &str, body: &str, rows: u16, columns: u16) -> String {
    let columns = usize::from(columns.max(1));
    // The title, the empty line, and one row kept free so that the last
    // line's newline does not scroll the screen.
    let room = usize::from(rows).saturating_sub(3).max(1);
    let lines: Vec<&str> = body.lines().collect();
    let mut shown: Vec<String> = vec![title.to_owned(), String::new()];
    if lines.len() <= room {
        shown.extend(lines.iter().map(|l| (*l).to_owned()));
    } else {
        let kept = room - 1;
        shown.extend(lines[..kept].iter().map(|l| (*l).to_owned()));
        shown.push(format!("... {} more lines", lines.len() - kept));
    }
    let mut out = String::from(HOME);
    for line in shown {
        out.extend(line.chars().take(columns));
        out.push_str(CLEAR_LINE);
        out.push('\n');
    }
    out.push_str(CLEAR_BELOW);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_says_how_often_and_when() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        assert_eq!(
            title("vow promise list", Duration::from_millis(2500), now),
            "Every 2s 500ms: vow promise list   1970-01-02T00:00:00Z"
        );
    }

    #[test]
    fn a_frame_overwrites_the_screen_in_place() {
        assert_eq!(
            frame("T", "a\nb", 24, 80),
            "\x1b[HT\x1b[K\n\x1b[K\na\x1b[K\nb\x1b[K\n\x1b[J"
        );
    }

    #[test]
    fn a_frame_is_clipped_to_the_window() {
        let body = (1..=10).map(|i| format!("line {i}")).collect::<Vec<_>>();
        let screen = frame("title", &body.join("\n"), 7, 4);
        let lines: Vec<&str> = screen
            .trim_start_matches(HOME)
            .trim_end_matches(CLEAR_BELOW)
            .lines()
            .map(|l| l.trim_end_matches(CLEAR_LINE))
            .collect();
        // 7 rows: the title, an empty line, 3 lines of the body and the
        // count of the rest, and a free row; 4 columns each.
        assert_eq!(lines, ["titl", "", "line", "line", "line", "... "]);
    }
}
