//! Layer-cached builds from a Containerfile: one layer per step, a step
//! reused when it and its inputs are unchanged, and every step after the
//! first changed one rebuilt.
//!
//! ```no_run
//! use layerstore::build::{BuildOptions, Builder};
//! # fn main() -> layerstore::Result<()> {
//! let store = layerstore::Store::open("/var/lib/layerstore")?;
//! let report = Builder::new(&store).build(
//!     std::path::Path::new("./app"),
//!     &BuildOptions::default().tag("app:1".parse()?),
//!     |step| println!("{} {}", if step.cached { "CACHED" } else { "BUILT" }, step.instruction),
//! )?;
//! println!("{}", report.image);
//! # Ok(()) }
//! ```
//!
//! The subset of the Containerfile language is in [`containerfile`]; the
//! cache keys in the private `cache` module: the parent step's key, the
//! normalised instruction, and for `COPY` a digest of what it copies
//! (content, mode, owner, link targets; not mtimes). Only the stages that
//! the last one needs are built. `ENV`, `WORKDIR`, `LABEL`, `CMD`,
//! `ENTRYPOINT` and `USER` change the image's config and add a history
//! record without a layer, as Docker does; `COPY` and `RUN` add a layer.
//! Histories carry no timestamps, so a `--no-cache` rebuild of steps other
//! than `RUN` gives the same image ids. Nothing is tagged unless the whole
//! build succeeds.

pub mod containerfile;

mod cache;
mod copy;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::cache::Key;
use self::containerfile::{Instruction, InstructionKind};
use crate::error::{Error, Result};
use crate::id::{ImageId, LayerId};
use crate::store::Store;
use crate::tree::TagName;
use crate::tree::{History, Image, ImageConfig, ScanOptions, Snapshot};

/// How to build.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The Containerfile; default `CONTEXT/Containerfile`, else
    /// `CONTEXT/Dockerfile`.
    pub file: Option<PathBuf>,
    /// Tag the final image with this name (only once every step succeeded).
    pub tag: Option<TagName>,
    /// Rebuild every step (cache entries are still written).
    pub no_cache: bool,
    /// Stop a `RUN` that takes longer, failing the build.
    pub run_timeout: Option<Duration>,
}

impl BuildOptions {
    /// Builds from this Containerfile.
    #[must_use]
    pub fn file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Tags the final image with `tag`.
    #[must_use]
    pub fn tag(mut self, tag: TagName) -> Self {
        self.tag = Some(tag);
        self
    }

    /// Rebuilds every step (cache entries are still written).
    #[must_use]
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// Stops a `RUN` that takes longer than `timeout`, failing the build.
    #[must_use]
    pub fn run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }
}

/// One step of a build, as it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The stage (0-based, in file order) the step belongs to.
    pub stage: usize,
    /// The Containerfile line the instruction starts on.
    pub line: usize,
    /// The instruction, normalised.
    pub instruction: String,
    /// Whether the step came from the cache.
    pub cached: bool,
    /// The image after the step.
    pub image: ImageId,
    /// The layer the step added (`None` for a config-only step).
    pub layer: Option<LayerId>,
}

/// What a build made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// Every step run or reused, `FROM` lines excluded, in order.
    pub steps: Vec<StepReport>,
    /// The final image.
    pub image: ImageId,
}

/// Builds images from Containerfiles into a store.
#[derive(Debug, Clone)]
pub struct Builder<'s> {
    store: &'s Store,
}

/// A stage of the file: its `FROM` and the instructions after it.
struct Stage<'a> {
    from: &'a Instruction,
    image: &'a str,
    alias: Option<&'a str>,
    steps: &'a [Instruction],
}

/// Where a stage's build stands.
struct State {
    image: ImageId,
    key: Key,
    /// Still taking steps from the cache (no miss yet, no `--no-cache`).
    caching: bool,
    config: ImageConfig,
    tree: Option<Snapshot>,
}

impl<'s> Builder<'s> {
    /// A builder over `store`.
    #[must_use]
    pub const fn new(store: &'s Store) -> Self {
        Self { store }
    }

    /// Builds the Containerfile of `context` (see [`BuildOptions::file`]);
    /// `progress` sees each step as it is done.
    ///
    /// # Errors
    /// [`Error::Build`] naming the file and line: a syntax error, an unknown
    /// image or stage, a `COPY` source missing or outside the context, a
    /// failed or timed-out `RUN`, `RUN` without the privilege it needs. The
    /// store's errors as they come. Nothing is tagged on error; steps that
    /// completed stay in the cache.
    pub fn build(
        &self,
        context: &Path,
        options: &BuildOptions,
        mut progress: impl FnMut(&StepReport),
    ) -> Result<BuildReport> {
        let file = options.file.clone().unwrap_or_else(|| {
            let containerfile = context.join("Containerfile");
            if containerfile.exists() {
                containerfile
            } else {
                context.join("Dockerfile")
            }
        });
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?;
        let instructions = containerfile::parse(&text, &shown)?;
        let stages = split_stages(&instructions);
        let needed = needed_stages(&stages, &shown)?;

        let mut context_tree: Option<Snapshot> = None;
        let mut done: HashMap<usize, (ImageId, Key)> = HashMap::new();
        let mut steps = Vec::new();
        for (index, stage) in stages.iter().enumerate() {
            if !needed[index] {
                continue;
            }
            let mut state = self.start(stage, &stages, &done, &shown, options)?;
            for step in stage.steps {
                let at = run::At {
                    file: &shown,
                    line: step.line,
                };
                let report = self.step(
                    step,
                    index,
                    &mut state,
                    &stages,
                    &done,
                    context,
                    &mut context_tree,
                    options,
                    &at,
                )?;
                progress(&report);
                steps.push(report);
            }
            done.insert(index, (state.image, state.key));
        }
        let last = stages.len() - 1;
        let (image, _) = done.remove(&last).ok_or_else(|| Error::Build {
            file: shown.clone(),
            line: 0,
            reason: "the last stage was not built".into(),
        })?;
        self.store.flush()?;
        if let Some(tag) = &options.tag {
            self.store.set_tag(tag, &image)?;
        }
        Ok(BuildReport { steps, image })
    }

    /// The state at a stage's `FROM`.
    fn start(
        &self,
        stage: &Stage<'_>,
        stages: &[Stage<'_>],
        done: &HashMap<usize, (ImageId, Key)>,
        file: &str,
        options: &BuildOptions,
    ) -> Result<State> {
        let (image, key) = if stage.image.eq_ignore_ascii_case("scratch") {
            (self.store.put_empty_image()?, Key::from_image(None))
        } else if let Some(i) = stage_index(stages, stage.image) {
            done.get(&i).cloned().ok_or_else(|| Error::Build {
                file: file.to_owned(),
                line: stage.from.line,
                reason: format!("stage '{}' is not built before it is used", stage.image),
            })?
        } else {
            let id = self.resolve(stage.image, file, stage.from.line)?;
            (id, Key::from_image(Some(&id)))
        };
        let config = self.store.image(&image)?.config().clone();
        Ok(State {
            image,
            key,
            caching: !options.no_cache,
            config,
            tree: None,
        })
    }

    fn resolve(&self, reference: &str, file: &str, line: usize) -> Result<ImageId> {
        self.store
            .resolve_image(reference)
            .map_err(|e| Error::Build {
                file: file.to_owned(),
                line,
                reason: format!("unknown image '{reference}': {e}"),
            })
    }

    /// Does (or takes from the cache) one step.
    #[allow(clippy::too_many_arguments, reason = "the build's state, passed down")]
    fn step(
        &self,
        step: &Instruction,
        in_stage: usize,
        state: &mut State,
        stages: &[Stage<'_>],
        done: &HashMap<usize, (ImageId, Key)>,
        context: &Path,
        context_tree: &mut Option<Snapshot>,
        options: &BuildOptions,
        at: &run::At<'_>,
    ) -> Result<StepReport> {
        let instruction = step.normalised();
        let err = |reason: String| Error::Build {
            file: at.file.to_owned(),
            line: at.line,
            reason,
        };
        // What a COPY copies, so that its digest is part of the key.
        let copied = match &step.kind {
            InstructionKind::Copy {
                sources,
                dest,
                from,
                chown,
            } => {
                let (tree, source) = if let Some(name) = from {
                    let image = if let Some(i) = stage_index(stages, name) {
                        done.get(&i)
                            .map(|(id, _)| *id)
                            .ok_or_else(|| err(format!("stage '{name}' is not built yet")))?
                    } else {
                        self.resolve(name, at.file, at.line)?
                    };
                    (self.store.image_tree(&image)?, copy::Source::Image)
                } else {
                    if context_tree.is_none() {
                        let scanned = self.store.scan(context, &ScanOptions::default())?;
                        *context_tree = Some(scanned.snapshot);
                    }
                    let tree = context_tree.clone().unwrap_or_else(Snapshot::empty);
                    (tree, copy::Source::Context)
                };
                let target = copy::dest_path(dest, &state.config.workdir).map_err(&err)?;
                let planned =
                    copy::plan(&tree, source, sources, &target, dest.ends_with('/'), *chown)
                        .map_err(|r| err(format!("COPY: {r}")))?;
                Some(planned)
            }
            _ => None,
        };
        let digest = copied.as_deref().map(cache::copy_digest);
        let key = state.key.then(&instruction, digest.as_ref());

        let hit = if state.caching {
            cache::lookup(self.store, &key)
        } else {
            None
        };
        let (image, cached) = if let Some(image) = hit {
            (image, true)
        } else {
            state.caching = false;
            let image = self.execute(step, &instruction, state, copied, options, at)?;
            self.store.set_cache_entry(&key.0, &image)?;
            (image, false)
        };
        let made = self.store.image(&image)?;
        let layer = (made.layers().len() > self.store.image(&state.image)?.layers().len())
            .then(|| made.layers().last().copied())
            .flatten();
        state.image = image;
        state.key = key;
        state.config = made.config().clone();
        state.tree = None;
        Ok(StepReport {
            stage: in_stage,
            line: step.line,
            instruction,
            cached,
            image,
            layer,
        })
    }

    /// The tree of the image the state is at, loaded once.
    fn tree(&self, state: &mut State) -> Result<Snapshot> {
        if state.tree.is_none() {
            state.tree = Some(self.store.image_tree(&state.image)?);
        }
        Ok(state.tree.clone().unwrap_or_else(Snapshot::empty))
    }

    /// Does the step for real; returns the image after it.
    fn execute(
        &self,
        step: &Instruction,
        instruction: &str,
        state: &mut State,
        copied: Option<Vec<crate::tree::Entry>>,
        options: &BuildOptions,
        at: &run::At<'_>,
    ) -> Result<ImageId> {
        let parent = self.store.image(&state.image)?;
        let history = History {
            created_by: instruction.to_owned(),
            ..History::default()
        };
        let mut config = state.config.clone();
        match &step.kind {
            InstructionKind::Copy { chown, .. } => {
                let before = self.tree(state)?;
                let copied = copy::add_parents(copied.unwrap_or_default(), &before, *chown);
                let after = copy::apply(&before, copied)?;
                let layer = before.diff(&after);
                self.store.put_child_image(
                    Some(&state.image),
                    &layer,
                    &after,
                    Some(config),
                    history,
                )
            }
            InstructionKind::Run(command) => {
                let ran = run::run(
                    self.store,
                    &state.image,
                    &config,
                    &command.argv(),
                    options.run_timeout,
                    at,
                )?;
                // The container's commit records itself; record the step.
                let made = self.store.image(&ran)?;
                let mut records = parent.history().to_vec();
                records.push(History {
                    empty_layer: false,
                    ..history
                });
                let image = Image::new(made.layers().to_vec(), made.rootfs(), config, records)?;
                self.store.put_image(&image)
            }
            kind => {
                match kind {
                    InstructionKind::Env(pairs) => {
                        for (k, v) in pairs {
                            config
                                .env
                                .retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
                            config.env.push(format!("{k}={v}"));
                        }
                    }
                    InstructionKind::Workdir(dir) => {
                        config.workdir = if dir.starts_with('/') || config.workdir.is_empty() {
                            format!("/{}", dir.trim_start_matches('/'))
                        } else {
                            format!("{}/{dir}", config.workdir.trim_end_matches('/'))
                        };
                    }
                    InstructionKind::Label(pairs) => {
                        for (k, v) in pairs {
                            config.labels.insert(k.clone(), v.clone());
                        }
                    }
                    InstructionKind::Cmd(c) => config.cmd = c.argv(),
                    InstructionKind::Entrypoint(c) => config.entrypoint = c.argv(),
                    InstructionKind::User(u) => config.user.clone_from(u),
                    InstructionKind::From { .. }
                    | InstructionKind::Copy { .. }
                    | InstructionKind::Run(_) => {}
                }
                let mut records = parent.history().to_vec();
                records.push(History {
                    empty_layer: true,
                    ..history
                });
                let image = Image::new(parent.layers().to_vec(), parent.rootfs(), config, records)?;
                self.store.put_image(&image)
            }
        }
    }
}

/// The stages of a parsed file (it starts with `FROM`: the parser checks).
fn split_stages(instructions: &[Instruction]) -> Vec<Stage<'_>> {
    let mut stages = Vec::new();
    let mut start = 0;
    for (i, ins) in instructions.iter().enumerate().skip(1) {
        if matches!(ins.kind, InstructionKind::From { .. }) {
            stages.push(stage_of(&instructions[start..i]));
            start = i;
        }
    }
    stages.push(stage_of(&instructions[start..]));
    stages
}

fn stage_of(instructions: &[Instruction]) -> Stage<'_> {
    let (from, steps) = instructions
        .split_first()
        .unwrap_or_else(|| unreachable!("a stage starts with its FROM"));
    let (image, alias) = match &from.kind {
        InstructionKind::From { image, alias } => (image.as_str(), alias.as_deref()),
        _ => unreachable!("a stage starts with its FROM"),
    };
    Stage {
        from,
        image,
        alias,
        steps,
    }
}

/// The stage named `name` (by alias, or by index as Docker allows).
fn stage_index(stages: &[Stage<'_>], name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    stages
        .iter()
        .position(|s| s.alias == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < stages.len()))
}

/// Which stages the last one needs, transitively (`FROM stage`,
/// `COPY --from=stage`); a stage used before it is defined is an error.
fn needed_stages(stages: &[Stage<'_>], file: &str) -> Result<Vec<bool>> {
    let mut needed = vec![false; stages.len()];
    let mut todo = vec![stages.len() - 1];
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        let stage = &stages[i];
        let mut uses: Vec<(&str, usize)> = vec![(stage.image, stage.from.line)];
        for step in stage.steps {
            if let InstructionKind::Copy {
                from: Some(from), ..
            } = &step.kind
            {
                uses.push((from.as_str(), step.line));
            }
        }
        for (name, line) in uses {
            if let Some(j) = stage_index(stages, name) {
                if j >= i {
                    return Err(Error::Build {
                        file: file.to_owned(),
                        line,
                        reason: format!("stage '{name}' is used before it is defined"),
                    });
                }
                todo.push(j);
            }
        }
    }
    Ok(needed)
}
