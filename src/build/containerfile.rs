//! The Containerfile subset that [`Builder`](super::Builder) understands.
//!
//! `FROM image|scratch [AS name]`, `COPY [--from=stage] [--chown=user[:group]]
//! src... dest` (globs in sources), `RUN` (shell form, or exec form as a JSON
//! array), `ENV key=value ...` (or the legacy `ENV key value`), `WORKDIR`,
//! `LABEL key=value ...`, `CMD`, `ENTRYPOINT` (shell or exec form), `USER`.
//! `#` starts a comment line; a line ending in `\` continues on the next one
//! (comment lines inside a continuation are skipped, as Docker does).
//! Instruction names are case-insensitive. Anything else is an error naming
//! its line.

use crate::error::{Error, Result};

/// One instruction, as written (arguments parsed), with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The 1-based line the instruction starts on.
    pub line: usize,
    /// What it says.
    pub kind: InstructionKind,
}

/// A command in shell form (run by `/bin/sh -c`) or exec form (argv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `RUN echo hi`: given to `/bin/sh -c`.
    Shell(String),
    /// `RUN ["echo", "hi"]`: run as is.
    Exec(Vec<String>),
}

impl Command {
    /// The argv that runs it.
    #[must_use]
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Command::Exec(v) => v.clone(),
        }
    }
}

/// The instructions of the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    /// `FROM image [AS name]`; `image` may be `scratch` or an earlier stage.
    From {
        /// An image reference, `scratch`, or an earlier stage's name.
        image: String,
        /// The stage's name, if given.
        alias: Option<String>,
    },
    /// `COPY [--from=stage] [--chown=user[:group]] src... dest`.
    Copy {
        /// Sources: paths or globs in the context (or in the stage `from`).
        sources: Vec<String>,
        /// Destination, absolute or relative to the working directory.
        dest: String,
        /// An earlier stage (or an image) to copy from instead of the context.
        from: Option<String>,
        /// Numeric owner for the copied entries.
        chown: Option<(u32, u32)>,
    },
    /// `RUN command`.
    Run(Command),
    /// `ENV key=value ...`.
    Env(Vec<(String, String)>),
    /// `WORKDIR path`.
    Workdir(String),
    /// `LABEL key=value ...`.
    Label(Vec<(String, String)>),
    /// `CMD command`.
    Cmd(Command),
    /// `ENTRYPOINT command`.
    Entrypoint(Command),
    /// `USER user[:group]`.
    User(String),
}

impl Instruction {
    /// The instruction in one normalised line: what the build cache keys on,
    /// and what an image's history records.
    #[must_use]
    pub fn normalised(&self) -> String {
        let command = |c: &Command| match c {
            Command::Shell(s) => s.clone(),
            Command::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
        };
        let pairs = |p: &[(String, String)]| {
            p.iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match &self.kind {
            InstructionKind::From { image, alias } => match alias {
                Some(a) => format!("FROM {image} AS {a}"),
                None => format!("FROM {image}"),
            },
            InstructionKind::Copy {
                sources,
                dest,
                from,
                chown,
            } => {
                let from = from.as_ref().map(|f| format!(" --from={f}"));
                let chown = chown.map(|(u, g)| format!(" --chown={u}:{g}"));
                let paths = serde_json::to_string(&[sources.clone(), vec![dest.clone()]].concat())
                    .unwrap_or_default();
                format!(
                    "COPY{}{} {paths}",
                    from.unwrap_or_default(),
                    chown.unwrap_or_default()
                )
            }
            InstructionKind::Run(c) => format!("RUN {}", command(c)),
            InstructionKind::Env(p) => format!("ENV {}", pairs(p)),
            InstructionKind::Workdir(w) => format!("WORKDIR {w}"),
            InstructionKind::Label(p) => format!("LABEL {}", pairs(p)),
            InstructionKind::Cmd(c) => format!("CMD {}", command(c)),
            InstructionKind::Entrypoint(c) => format!("ENTRYPOINT {}", command(c)),
            InstructionKind::User(u) => format!("USER {u}"),
        }
    }
}

/// A syntax error at `line` of `file`.
fn syntax(file: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::Build {
        file: file.to_owned(),
        line,
        reason: reason.into(),
    }
}

/// Parses a Containerfile; `file` names it in errors.
///
/// # Errors
/// [`Error::Build`] naming the file and line of the first thing it cannot
/// read: an unknown instruction, missing arguments, a malformed exec form or
/// `--flag`, a first instruction other than `FROM`.
pub fn parse(text: &str, file: &str) -> Result<Vec<Instruction>> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = raw.trim();
        // Comments and blank lines are skipped, inside a continuation too
        // (as Docker does).
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((number, String::new()));
        if let Some(body) = trimmed.strip_suffix('\\') {
            joined.push_str(body);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(trimmed);
        if !joined.trim().is_empty() {
            out.push(parse_instruction(joined.trim(), start, file)?);
        }
    }
    if let Some((start, joined)) = pending
        && !joined.trim().is_empty()
    {
        out.push(parse_instruction(joined.trim(), start, file)?);
    }
    match out.first() {
        None => Err(syntax(file, 1, "no instructions")),
        Some(first) if !matches!(first.kind, InstructionKind::From { .. }) => Err(syntax(
            file,
            first.line,
            "the first instruction must be FROM",
        )),
        Some(_) => Ok(out),
    }
}

fn parse_instruction(text: &str, line: usize, file: &str) -> Result<Instruction> {
    let (word, rest) = text
        .split_once(char::is_whitespace)
        .map_or((text, ""), |(w, r)| (w, r.trim()));
    let err = |reason: String| syntax(file, line, reason);
    let need = |what: &str| {
        if rest.is_empty() {
            Err(err(format!("{word} needs {what}")))
        } else {
            Ok(())
        }
    };
    let kind = match word.to_ascii_uppercase().as_str() {
        "FROM" => {
            need("an image")?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [image] => InstructionKind::From {
                    image: (*image).to_owned(),
                    alias: None,
                },
                [image, as_, alias] if as_.eq_ignore_ascii_case("as") => InstructionKind::From {
                    image: (*image).to_owned(),
                    alias: Some((*alias).to_ascii_lowercase()),
                },
                _ => return Err(err(format!("FROM takes 'image [AS name]', not '{rest}'"))),
            }
        }
        "ADD" => {
            return Err(err(
                "ADD is not supported (it fetches URLs and unpacks archives): use COPY".into(),
            ));
        }
        "COPY" => {
            need("sources and a destination")?;
            parse_copy(rest).map_err(err)?
        }
        "RUN" => {
            need("a command")?;
            InstructionKind::Run(parse_command(rest).map_err(err)?)
        }
        "CMD" => {
            need("a command")?;
            InstructionKind::Cmd(parse_command(rest).map_err(err)?)
        }
        "ENTRYPOINT" => {
            need("a command")?;
            InstructionKind::Entrypoint(parse_command(rest).map_err(err)?)
        }
        "ENV" => {
            need("key=value")?;
            InstructionKind::Env(parse_pairs(rest, true).map_err(err)?)
        }
        "LABEL" => {
            need("key=value")?;
            InstructionKind::Label(parse_pairs(rest, false).map_err(err)?)
        }
        "WORKDIR" => {
            need("a directory")?;
            InstructionKind::Workdir(rest.to_owned())
        }
        "USER" => {
            need("a user")?;
            InstructionKind::User(rest.to_owned())
        }
        other => {
            return Err(err(format!(
                "unknown instruction '{other}' (this builder knows FROM, COPY, RUN, ENV, \
                 WORKDIR, LABEL, CMD, ENTRYPOINT, USER)"
            )));
        }
    };
    Ok(Instruction { line, kind })
}

/// A JSON array of strings (exec form), else the text itself (shell form).
fn parse_command(rest: &str) -> std::result::Result<Command, String> {
    if rest.starts_with('[') {
        let argv: Vec<String> = serde_json::from_str(rest)
            .map_err(|e| format!("exec form is a JSON array of strings: {e}"))?;
        if argv.is_empty() {
            return Err("the exec form is empty".into());
        }
        Ok(Command::Exec(argv))
    } else {
        Ok(Command::Shell(rest.to_owned()))
    }
}

fn parse_copy(rest: &str) -> std::result::Result<InstructionKind, String> {
    let mut words: Vec<String> = if rest.trim_start().starts_with('[') {
        serde_json::from_str(rest).map_err(|e| format!("COPY's JSON form: {e}"))?
    } else {
        split_words(rest)?
    };
    let mut from = None;
    let mut chown = None;
    while words.first().is_some_and(|w| w.starts_with("--")) {
        let flag = words.remove(0);
        if let Some(stage) = flag.strip_prefix("--from=") {
            from = Some(stage.to_ascii_lowercase());
        } else if let Some(owner) = flag.strip_prefix("--chown=") {
            chown = Some(parse_owner(owner)?);
        } else {
            return Err(format!(
                "unknown COPY flag '{flag}' (known: --from, --chown)"
            ));
        }
    }
    if words.len() < 2 {
        return Err("COPY needs at least one source and a destination".into());
    }
    let dest = words.pop().unwrap_or_default();
    Ok(InstructionKind::Copy {
        sources: words,
        dest,
        from,
        chown,
    })
}

/// `uid[:gid]` (for `--chown` and `USER`), numeric; `root` and the empty
/// string are 0; the group defaults to the user's id.
pub(crate) fn parse_owner(owner: &str) -> std::result::Result<(u32, u32), String> {
    let id = |s: &str| match s {
        "" | "root" => Ok(0),
        _ => s
            .parse::<u32>()
            .map_err(|_| format!("only numeric ids (or root) are supported, not '{s}'")),
    };
    if let Some((u, g)) = owner.split_once(':') {
        Ok((id(u)?, id(g)?))
    } else {
        let u = id(owner)?;
        Ok((u, u))
    }
}

/// Words separated by blanks, with `"..."` and `'...'` quoting and `\` escapes.
fn split_words(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                    in_word = true;
                }
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("an unterminated quote".into());
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// `key=value` pairs (values may be quoted); with `legacy`, also `key value`.
fn parse_pairs(rest: &str, legacy: bool) -> std::result::Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if legacy && !first.contains('=') {
        let value = rest[first.len()..].trim();
        if value.is_empty() {
            return Err(format!("'{first}' has no value"));
        }
        return Ok(vec![(first.to_owned(), value.to_owned())]);
    }
    split_words(rest)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("'{w}' is not key=value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<InstructionKind> {
        parse(text, "Containerfile")
            .unwrap()
            .into_iter()
            .map(|i| i.kind)
            .collect()
    }

    fn error(text: &str) -> (usize, String) {
        match parse(text, "Containerfile") {
            Err(Error::Build { line, reason, .. }) => (line, reason),
            other => panic!("expected a build error, got {other:?}"),
        }
    }

    #[test]
    fn every_instruction_parses() {
        let text = r#"
# a comment
FROM base:1 AS Builder
COPY --from=builder --chown=10:20 a/*.txt "b c" /dst/
RUN apt-get install \
    # a comment inside a continuation
    -y make
RUN ["/bin/echo", "hi"]
ENV A=1 B="two words"
ENV LEGACY some value
WORKDIR /app
LABEL org.example="x y" z=1
CMD ["serve", "--port=80"]
ENTRYPOINT /bin/app
user 1000:1000
"#;
        let got = kinds(text);
        assert_eq!(
            got,
            vec![
                InstructionKind::From {
                    image: "base:1".into(),
                    alias: Some("builder".into())
                },
                InstructionKind::Copy {
                    sources: vec!["a/*.txt".into(), "b c".into()],
                    dest: "/dst/".into(),
                    from: Some("builder".into()),
                    chown: Some((10, 20)),
                },
                InstructionKind::Run(Command::Shell("apt-get install  -y make".into())),
                InstructionKind::Run(Command::Exec(vec!["/bin/echo".into(), "hi".into()])),
                InstructionKind::Env(vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "two words".into())
                ]),
                InstructionKind::Env(vec![("LEGACY".into(), "some value".into())]),
                InstructionKind::Workdir("/app".into()),
                InstructionKind::Label(vec![
                    ("org.example".into(), "x y".into()),
                    ("z".into(), "1".into())
                ]),
                InstructionKind::Cmd(Command::Exec(vec!["serve".into(), "--port=80".into()])),
                InstructionKind::Entrypoint(Command::Shell("/bin/app".into())),
                InstructionKind::User("1000:1000".into()),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(error("FROM scratch\n\nFROBNICATE x\n").0, 3);
        assert!(error("FROM scratch\nFROBNICATE x").1.contains("FROBNICATE"));
        assert_eq!(error("RUN x").0, 1, "FROM must come first");
        assert_eq!(error("FROM scratch\nRUN [\"a\",").0, 2);
        assert_eq!(error("FROM scratch\nCOPY onlyone").0, 2);
        assert_eq!(error("FROM scratch\nCOPY --bogus a b").0, 2);
        assert_eq!(error("FROM scratch\nCOPY --chown=bob a b").0, 2);
        assert_eq!(error("FROM scratch\nENV novalue").0, 2);
        assert_eq!(error("FROM scratch\nLABEL =x").0, 2);
        assert_eq!(error("FROM a b c d").0, 1);
        assert_eq!(error("FROM scratch\nADD x y").0, 2);
        assert_eq!(error("FROM scratch\nCOPY \"a b").0, 2);
        assert_eq!(error("# nothing\n").0, 1);
        assert_eq!(error("FROM scratch\nRUN []").0, 2);
    }

    #[test]
    fn normalised_text_is_one_line_whatever_the_layout() {
        let a = parse("FROM scratch\nRUN  echo   hi", "f").unwrap();
        let b = parse("FROM scratch\nRUN echo \\\n   hi", "f").unwrap();
        assert_ne!(a[1].normalised(), "");
        assert_eq!(a[0].normalised(), "FROM scratch");
        // Continuation lines are trimmed and joined by one space; the rest
        // of the shell text is kept as written (spacing matters to a shell).
        assert_eq!(b[1].normalised(), "RUN echo  hi");
        assert_eq!(a[1].normalised(), "RUN echo   hi");
        let blank = parse("FROM scratch\nRUN a \\\n\n  b\nCMD c", "f").unwrap();
        assert_eq!(blank[1].normalised(), "RUN a  b");
        assert_eq!(blank[2].line, 5);
        let c = parse("FROM scratch\ncopy a  b", "f").unwrap();
        assert_eq!(c[1].normalised(), r#"COPY ["a","b"]"#);
    }
}
