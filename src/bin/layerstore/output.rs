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

use indicatif::{ProgressBar, ProgressDrawTarget};

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
}

impl Output {
    pub(crate) fn new(json: bool, progress: bool) -> Self {
        Self { json, progress }
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

    /// A spinner on stderr while long work runs, when stderr is a terminal
    /// and the report is text, or `--progress` was given; cleared by
    /// [`Output::finish`].
    pub(crate) fn spinner(&self, message: String) -> Option<ProgressBar> {
        if !(self.progress || (!self.json && std::io::stderr().is_terminal())) {
            return None;
        }
        let bar = ProgressBar::new_spinner().with_message(message);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(100));
        Some(bar)
    }

    /// Clear the spinner, if there is one.
    pub(crate) fn finish(bar: Option<ProgressBar>) {
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
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
