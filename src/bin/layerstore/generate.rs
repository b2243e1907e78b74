//! What is generated from the command line's own definition:
//! `completions bash|zsh|fish` (a completion script on stdout) and
//! `man DIR` (man pages: `layerstore.1` and `layerstore-COMMAND.1`).

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::{Cli, CmdResult, Failure, output};

#[derive(clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    shell: String,
}

#[derive(clap::Args)]
pub(crate) struct ManArgs {
    /// The directory to write the pages into (created if absent).
    dir: PathBuf,
}

/// The completion script for a shell, on stdout.
pub(crate) fn completions(args: &CompletionsArgs) {
    let shell = match args.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        _ => Shell::Fish,
    };
    let mut cmd = Cli::command();
    output::print(|out| {
        clap_complete::generate(shell, &mut cmd, "layerstore", out);
        Ok(())
    });
}

/// Man pages for the program and each command, written into DIR; prints
/// the files written.
pub(crate) fn man(args: &ManArgs) -> CmdResult {
    let io = |e: std::io::Error| {
        Failure::System(format!(
            "could not write into '{}': {e}",
            args.dir.display()
        ))
    };
    std::fs::create_dir_all(&args.dir).map_err(io)?;
    let cmd = Cli::command();
    let mut written = Vec::new();
    clap_mangen::generate_to(cmd, &args.dir).map_err(io)?;
    for entry in std::fs::read_dir(&args.dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "1") {
            written.push(path);
        }
    }
    written.sort();
    output::print(|out| {
        for path in &written {
            writeln!(out, "{}", path.display())?;
        }
        Ok(())
    });
    Ok(())
}
