//! Fault injection for tests (feature `fault-injection`): make the Nth write
//! site reached under a directory fail with a chosen errno, as a full disk
//! (`ENOSPC`) or a failing device (`EIO`) would.
//!
//! Every place where the store writes, fsyncs, renames or removes a file
//! calls `check` first (pack create/append/fsync/rename, the atomic writes of
//! indexes, refs and stat caches, directory fsyncs; gc's and repair's
//! removals, quarantine moves and directory creation), and so does every
//! write of a checkout (`confine::ConfinedDir`'s creations and metadata calls, each
//! chunk written, extended attributes). Without the feature `check` is an
//! empty inline function.
//!
//! The plan is process-wide but scoped to a directory: only sites whose path
//! lies beneath the armed root count, so tests that use other directories
//! (running in parallel in the same binary) neither trip it nor move its count.
//!
//! [`arm_kill`] makes the Nth site kill the process with SIGKILL instead, so
//! that the crash tests kill a child at a point of the operation they chose
//! (just before its Nth write, fsync, rename or removal), not after a guessed
//! time. The CLI arms it from `LAYERSTORE_FAULT_KILL` (`<nth>:<root>`) when
//! built with the feature.
//!
//! [`arm_pause`] makes an operation sleep at a named point (gc between its
//! walk and its sweep), saying so on stderr, so that a test can act while it
//! is there; the CLI arms it from `LAYERSTORE_FAULT_PAUSE`
//! (`<point>:<milliseconds>`, several separated by commas).
//!
//! [`arm_record`] makes the sites beneath a root log what they do instead of
//! failing: each site's op and path (and a rename's source), and the bytes
//! of every file written, read just before the next site. From that log the
//! crash-state tests (`tests/reliability/crash_states.rs`) build the states a
//! power loss could leave. [`omit`] turns one kind of site (`"fsync"`,
//! `"fsync directory"`) into a no-op there: a deliberately broken write
//! order, to show that those tests catch one.

#[cfg(feature = "fault-injection")]
mod imp {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    struct Plan {
        root: PathBuf,
        /// Sites under `root` reached since arming.
        seen: u64,
        /// The 1-based site number to fail; 0 fails none (counting only).
        fail_at: u64,
        errno: i32,
        /// Kill the process at `fail_at` instead of failing the call.
        kill: bool,
        /// The site that failed: its op and path.
        hit: Option<(String, PathBuf)>,
        /// What the sites did, when recording.
        record: Option<Recording>,
        /// The op whose sites do nothing (a test's broken write order).
        omit: Option<&'static str>,
    }

    /// The log of a recording plan.
    #[derive(Default)]
    struct Recording {
        events: Vec<Recorded>,
        /// Files written since the last event, to read at the next one.
        dirty: Vec<PathBuf>,
    }

    impl Recording {
        /// Reads the files written since the last event into the log.
        fn settle(&mut self) {
            for path in std::mem::take(&mut self.dirty) {
                if let Ok(bytes) = std::fs::read(&path) {
                    self.events.push(Recorded::Content { path, bytes });
                }
            }
        }
    }

    /// What a write site beneath a recorded root did (see [`arm_record`]).
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum Recorded {
        /// A site reached, just before its call: the op as the site names it
        /// (`"create"`, `"write"`, `"fsync"`, `"rename into place"`,
        /// `"fsync directory"`, `"remove"`, `"create directory"`, …), the
        /// path, and for a rename its source.
        Site {
            /// The op.
            op: &'static str,
            /// The path it acts on (a rename's destination).
            path: PathBuf,
            /// A rename's source.
            from: Option<PathBuf>,
        },
        /// The bytes of a file that a `"create"` or `"write"` site wrote,
        /// read just before the next event.
        Content {
            /// The file.
            path: PathBuf,
            /// Its bytes then.
            bytes: Vec<u8>,
        },
        /// A point marked with [`mark`] (an operation acknowledged, say).
        Mark(String),
    }

    /// The armed plans, one per root.
    static PLANS: Mutex<Vec<Plan>> = Mutex::new(Vec::new());

    fn plans() -> std::sync::MutexGuard<'static, Vec<Plan>> {
        PLANS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails the `nth` (1-based; 0 for none, only counting) write site reached
    /// beneath `root` with `errno`. Replaces any earlier plan for `root`;
    /// roots of different plans must not nest.
    pub fn arm(root: &Path, nth: u64, errno: i32) {
        arm_plan(root, nth, errno, false);
    }

    /// Kills the process with SIGKILL just before the `nth` (1-based; 0 for
    /// none, only counting) write site reached beneath `root`, after writing
    /// `fault: killed at write site <nth>: <op> <path>` to stderr. Replaces
    /// any earlier plan for `root`.
    pub fn arm_kill(root: &Path, nth: u64) {
        arm_plan(root, nth, 0, true);
    }

    fn arm_plan(root: &Path, nth: u64, errno: i32, kill: bool) {
        let mut plans = plans();
        plans.retain(|p| p.root != root);
        plans.push(Plan {
            root: root.to_path_buf(),
            seen: 0,
            fail_at: nth,
            errno,
            kill,
            hit: None,
            record: None,
            omit: None,
        });
    }

    /// Records every write site reached beneath `root` (none fails) until
    /// [`take_record`]: its op and path, and the bytes of each file written.
    /// Replaces any earlier plan for `root`.
    pub fn arm_record(root: &Path) {
        arm_plan(root, 0, 0, false);
        if let Some(plan) = plans().iter_mut().find(|p| p.root == root) {
            plan.record = Some(Recording::default());
        }
    }

    /// Adds `label` to the recording of `root` (a point the caller reached:
    /// a flush that returned, say).
    pub fn mark(root: &Path, label: &str) {
        if let Some(Plan {
            record: Some(rec), ..
        }) = plans().iter_mut().find(|p| p.root == root)
        {
            rec.settle();
            rec.events.push(Recorded::Mark(label.to_owned()));
        }
    }

    /// Ends the plan for `root`; returns what it recorded (nothing if it was
    /// not recording).
    #[must_use]
    pub fn take_record(root: &Path) -> Vec<Recorded> {
        let mut plans = plans();
        let Some(at) = plans.iter().position(|p| p.root == root) else {
            return Vec::new();
        };
        let plan = plans.swap_remove(at);
        plan.record
            .map(|mut rec| {
                rec.settle();
                rec.events
            })
            .unwrap_or_default()
    }

    /// Test-only, to break the write order on purpose: from now on the sites
    /// named `op` (`"fsync"` or `"fsync directory"`) beneath `root`, which
    /// must have a plan, return without doing anything and are not counted
    /// or recorded.
    pub fn omit(root: &Path, op: &'static str) {
        if let Some(plan) = plans().iter_mut().find(|p| p.root == root) {
            plan.omit = Some(op);
        }
    }

    /// Whether the site `op` at `path` is to do nothing (see [`omit`]).
    pub(crate) fn omitted(op: &'static str, path: &Path) -> bool {
        plans()
            .iter()
            .any(|p| p.omit == Some(op) && path.starts_with(&p.root))
    }

    /// Removes the plan for `root`; returns how many sites were reached
    /// beneath it, and the op and path of the one that failed, if one did.
    #[must_use]
    pub fn disarm(root: &Path) -> (u64, Option<(String, PathBuf)>) {
        let mut plans = plans();
        let Some(at) = plans.iter().position(|p| p.root == root) else {
            return (0, None);
        };
        let plan = plans.swap_remove(at);
        (plan.seen, plan.hit)
    }

    pub(crate) fn check(op: &'static str, path: &Path) -> std::io::Result<()> {
        check_site(op, path, None)
    }

    /// [`check`] for a rename of `from` to `to`.
    pub(crate) fn check_rename(from: &Path, to: &Path) -> std::io::Result<()> {
        check_site("rename into place", to, Some(from))
    }

    fn check_site(op: &'static str, path: &Path, from: Option<&Path>) -> std::io::Result<()> {
        let mut plans = plans();
        let Some(plan) = plans.iter_mut().find(|p| path.starts_with(&p.root)) else {
            return Ok(());
        };
        plan.seen += 1;
        if let Some(rec) = &mut plan.record {
            rec.settle();
            rec.events.push(Recorded::Site {
                op,
                path: path.to_path_buf(),
                from: from.map(Path::to_path_buf),
            });
            if matches!(op, "create" | "write") {
                rec.dirty.push(path.to_path_buf());
            }
        }
        if plan.seen == plan.fail_at {
            if plan.kill {
                eprintln!(
                    "fault: killed at write site {}: {op} {}",
                    plan.seen,
                    path.display()
                );
                // Holding the lock: no other thread passes a site meanwhile.
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
                // Not reached: SIGKILL cannot be caught.
                std::process::abort();
            }
            plan.hit = Some((op.to_owned(), path.to_path_buf()));
            return Err(std::io::Error::from_raw_os_error(plan.errno));
        }
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
pub use imp::{Recorded, arm, arm_kill, arm_record, disarm, mark, omit, take_record};

/// The pauses armed at named points of an operation: `pause` there sleeps.
#[cfg(feature = "fault-injection")]
static PAUSES: std::sync::Mutex<Vec<(String, std::time::Duration)>> =
    std::sync::Mutex::new(Vec::new());

/// Makes every later `pause` at `point` sleep for `time`, so that a test
/// holds an operation between two of its steps while other processes run
/// (gc between its walk and its sweep, say: `"gc-walked"`). Replaces any
/// earlier pause at `point`; pauses at other points stay armed.
#[cfg(feature = "fault-injection")]
pub fn arm_pause(point: &str, time: std::time::Duration) {
    let mut pauses = PAUSES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pauses.retain(|(at, _)| at != point);
    pauses.push((point.to_owned(), time));
}

/// Sleeps if a pause is armed at `point`, after writing `fault: paused at
/// <point>` to stderr (a test waiting for the operation to get there reads
/// it); without the feature, nothing.
#[inline]
pub(crate) fn pause(point: &'static str) {
    #[cfg(feature = "fault-injection")]
    {
        let armed = PAUSES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(at, _)| at == point)
            .map(|(_, time)| *time);
        if let Some(time) = armed
            && !time.is_zero()
        {
            eprintln!("fault: paused at {point}");
            std::thread::sleep(time);
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = point;
}

#[cfg(feature = "fault-injection")]
pub(crate) use imp::{check, check_rename, omitted};

/// [`check`] for a path that is built only when the feature is on (a write
/// site on a hot path, such as each chunk written by a checkout).
#[inline]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the same signature as the injecting version"
)]
pub(crate) fn check_lazy(
    op: &'static str,
    path: impl FnOnce() -> std::path::PathBuf,
) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    {
        check(op, &path())
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (op, path);
        Ok(())
    }
}

/// Without the feature: never fails.
#[cfg(not(feature = "fault-injection"))]
#[inline]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the same signature as the injecting version"
)]
pub(crate) fn check(_op: &'static str, _path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Without the feature: never fails.
#[cfg(not(feature = "fault-injection"))]
#[inline]
#[allow(
    clippy::unnecessary_wraps,
    reason = "the same signature as the injecting version"
)]
pub(crate) fn check_rename(_from: &std::path::Path, _to: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Without the feature: nothing is omitted.
#[cfg(not(feature = "fault-injection"))]
#[inline]
pub(crate) fn omitted(_op: &'static str, _path: &std::path::Path) -> bool {
    false
}
