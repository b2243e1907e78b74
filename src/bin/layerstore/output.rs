//! How the command line prints: each command's report goes to stdout, as
//! text for people or, under `--json`, as one JSON document; progress goes to
//! stderr, and only when stderr is a terminal (and not under `--json`) or
//! `--progress` was given.
//!
//! Everything written to stdout goes through [`print`] (or the [`outln!`]
//! macro): a reader that closes the pipe early (`layerstore diff A B | head
//! -1`) ends the command at once, quietly, with the status a shell gives a
//! process that `SIGPIPE` ended (141), where `println!` would panic.

use std::convert::Infallible;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use layerstore::{Progress, ProgressEvent};

/// `println!` through [`print`]: a closed pipe ends the command quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::print(|out| writeln!(out, $($arg)*))
    };
}
pub(crate) use outln;

/// The printer every command reports through.
pub(crate) struct Output {
    /// `--json`: one JSON document on stdout instead of text.
    json: bool,
    /// `--progress`: a spinner on stderr even when it is not a terminal.
    progress: bool,
    /// Sizes and times for people: `-H`, or stdout is a terminal.
    human: bool,
}

impl Output {
    pub(crate) fn new(json: bool, progress: bool, human: bool) -> Self {
        let human = human || std::io::stdout().is_terminal();
        Self {
            json,
            progress,
            human,
        }
    }

    /// A size in the text report: for people (`72.8MB`, decimal units as
    /// Docker prints them) under `-H` or on a terminal, else exact bytes.
    pub(crate) fn size(&self, bytes: u64) -> String {
        if self.human {
            human_size(bytes)
        } else {
            bytes.to_string()
        }
    }

    /// Whether sizes and times are printed for people.
    pub(crate) fn human(&self) -> bool {
        self.human
    }

    /// Print a command's report: under `--json` the document `json` makes, on
    /// one line; else what `text` prints. Only the one that is printed is
    /// built.
    pub(crate) fn report(&self, json: impl FnOnce() -> serde_json::Value, text: impl FnOnce()) {
        let printed = self.try_report(|| Ok::<_, Infallible>(json()), text);
        match printed {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }

    /// [`Output::report`] for a document that needs more reading to make;
    /// when that fails, nothing is printed and the error is returned.
    pub(crate) fn try_report<E>(
        &self,
        json: impl FnOnce() -> Result<serde_json::Value, E>,
        text: impl FnOnce(),
    ) -> Result<(), E> {
        if self.json {
            let doc = json()?;
            outln!("{doc}");
        } else {
            text();
        }
        Ok(())
    }

    /// A line of the text report printed as the work goes on (a build's
    /// steps); nothing under `--json`, whose document comes at the end.
    pub(crate) fn line(&self, line: impl std::fmt::Display) {
        if !self.json {
            outln!("{line}");
        }
    }

    /// Whether progress is shown: stderr is a terminal and the report is
    /// text, or `--progress` was given.
    fn shows_progress(&self) -> bool {
        self.progress || (!self.json && std::io::stderr().is_terminal())
    }

    /// A progress bar on stderr (when [`Output::spinner`] would show a
    /// spinner) counting `unit`s (`"bytes"` shows sizes) with their rate and
    /// the time left; a spinner until its length is set. Cleared by
    /// [`Output::finish`].
    pub(crate) fn bar(&self, message: String, unit: &str) -> Option<ProgressBar> {
        if !self.shows_progress() {
            return None;
        }
        let style = bar_style(unit).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::new(0).with_style(style).with_message(message);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(100));
        Some(bar)
    }

    /// A [`Progress`] hook moving `bar` (none without one): `show` picks
    /// from each event the position, the length (if known) and a message.
    pub(crate) fn hook(
        bar: Option<&ProgressBar>,
        show: impl Fn(&ProgressEvent) -> (u64, Option<u64>, String) + Send + Sync + 'static,
    ) -> Progress {
        let Some(bar) = bar.cloned() else {
            return Progress::none();
        };
        Progress::new(move |event| {
            let (position, length, message) = show(event);
            if let Some(length) = length {
                bar.set_length(length);
            }
            bar.set_position(position);
            bar.set_message(message);
        })
    }

    /// A spinner on stderr while long work runs, when stderr is a terminal
    /// and the report is text, or `--progress` was given; cleared by
    /// [`Output::finish`].
    pub(crate) fn spinner(&self, message: String) -> Option<ProgressBar> {
        if !self.shows_progress() {
            return None;
        }
        let bar = ProgressBar::new_spinner().with_message(message);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(100));
        Some(bar)
    }

    /// Clear the spinner or bar, if there is one.
    pub(crate) fn finish(bar: Option<ProgressBar>) {
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}

/// The look of [`Output::bar`]'s bars counting `unit`s.
fn bar_style(unit: &str) -> Result<ProgressStyle, indicatif::style::TemplateError> {
    let counts = if unit == "bytes" {
        "{bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)".to_owned()
    } else {
        format!("{{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)")
    };
    let template = format!("{{spinner}} {{msg}} [{{wide_bar}}] {counts}");
    Ok(ProgressStyle::with_template(&template)?.progress_chars("=> "))
}

/// A warning on stderr, in the form every command uses.
pub(crate) fn warn(what: impl std::fmt::Display) {
    eprintln!("layerstore: warning: {what}");
}

/// Writes to stdout through a buffer, flushed at the end. A closed pipe ends
/// the process quietly (status 141, as `SIGPIPE` would); any other failure to
/// write is reported and ends it with status 3.
pub(crate) fn print(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    if let Err(err) = write(&mut out).and_then(|()| out.flush()) {
        stdout_failed(&err);
    }
}

/// Ends the process after stdout failed: quietly for a closed pipe.
fn stdout_failed(err: &io::Error) -> ! {
    if err.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("layerstore: could not write to stdout: {err}");
    std::process::exit(3);
}

/// `bytes` in decimal units with three significant digits, as Docker prints
/// sizes: `0B`, `999B`, `1.5kB`, `72.8MB`, `1.23GB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let text = if unit == 0 || value >= 99.95 {
        format!("{value:.0}")
    } else if value >= 9.995 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", UNITS[unit])
}

/// How long ago `secs` (since the epoch) was, as `docker history` says it:
/// `5 seconds ago`, `About an hour ago`, `3 weeks ago`.
pub(crate) fn ago(secs: i64) -> String {
    let now = layerstore::Timestamp::now().secs;
    let d = (now - secs).max(0);
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match d {
        0 => "Less than a second ago".to_owned(),
        1..60 => plural(d, "second"),
        60..120 => "About a minute ago".to_owned(),
        120..3600 => plural(d / 60, "minute"),
        3600..7200 => "About an hour ago".to_owned(),
        7200..172_800 => plural(d / 3600, "hour"),
        172_800..1_209_600 => plural(d / 86_400, "day"),
        1_209_600..5_259_600 => plural(d / 604_800, "week"),
        5_259_600..63_115_200 => plural(d / 2_629_800, "month"),
        _ => plural(d / 31_557_600, "year"),
    }
}

/// Prints a table: a header and rows, columns separated by two spaces and
/// padded to their widest cell (counted in characters), the columns whose
/// index is in `right` aligned right, the last column not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        let last = widths.len().saturating_sub(1);
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if right.contains(&i) {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i < last {
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    print(|out| {
        line(out, &mut header.iter().copied())?;
        for row in rows {
            line(out, &mut row.iter().map(String::as_str))?;
        }
        Ok(())
    });
}
