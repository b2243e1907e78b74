//! The arrow rule: a module of `src/` imports only from the strata below it.
//!
//! The strata, bottom to top (the one statement of the order; the project's
//! architecture document will repeat it and point here):
//!
//! 0. the base: `error`, `id`, `fsutil` (they may import each other),
//!    and `testing`, the unit tests' helpers (`cfg(test)`), which the tests
//!    of every stratum use;
//! 1. `store`: the chunk store (chunks, packs, indexes, refs as a generic
//!    namespace, the store's layout, the pack half of gc and fsck);
//! 2. `tree`: the tree model and its stored form (entries, snapshots, layers,
//!    images, tags and pins, scan, checkout, diff, sync, the marking half of
//!    gc and fsck);
//! 3. `mount` and `oci`: peers, neither imports the other;
//! 4. `build`: may use `mount` (a build runs its steps in containers) and
//!    `oci`, and everything below;
//! 5. the CLI (`src/bin/`): a crate of its own that sees only the public API.
//!
//! `fuzzing` (feature `fuzzing`, test-only) may import from every stratum; no
//! module imports from it. `lib.rs`, the crate root, re-exports from all.
//!
//! The test reads every `.rs` file under `src/` (but `src/bin/`), with
//! comments and literals blanked out, and finds every path that reaches
//! another top-level module: `crate::…` paths (in `use` trees and in code;
//! names the crate root re-exports, such as `crate::Store`, are resolved
//! through `lib.rs`) and `super::` chains that climb out of their top-level
//! module. It fails naming the file, the line and the arrow of each one that
//! points up or sideways.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The strata, bottom to top: a module may import from a module of a lower
/// stratum, and, in the strata marked `true`, from its peers.
const STRATA: &[(&[&str], bool)] = &[
    (&["error", "id", "fsutil", "progress", "testing"], true),
    (&["store"], false),
    (&["tree"], false),
    (&["mount", "oci"], false),
    (&["build"], false),
];

/// The test-only entry points: they may import anything, nothing imports them.
const TEST_ONLY: &str = "fuzzing";

fn rank(module: &str) -> Option<(usize, bool)> {
    STRATA
        .iter()
        .position(|(modules, _)| modules.contains(&module))
        .map(|i| (i, STRATA[i].1))
}

/// Why `from` may not import `to`, or `None` if it may.
fn forbidden(from: &str, to: &str) -> Option<&'static str> {
    if from == to || from == TEST_ONLY {
        return None;
    }
    if to == TEST_ONLY {
        return Some("into the test-only entry points");
    }
    let (Some((from_rank, peers)), Some((to_rank, _))) = (rank(from), rank(to)) else {
        return Some("from or to a module the strata do not list");
    };
    match to_rank.cmp(&from_rank) {
        std::cmp::Ordering::Less => None,
        std::cmp::Ordering::Equal if peers => None,
        std::cmp::Ordering::Equal => Some("sideways, to a peer"),
        std::cmp::Ordering::Greater => Some("upward"),
    }
}

/// A token of blanked source: an identifier or keyword, or one punctuation
/// character (`::` is two `:`).
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
}

/// Source with comments, strings and character literals replaced by spaces
/// (newlines kept, so lines still count).
fn blank(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let keep_newlines = |out: &mut String, from: &[char]| {
        for &c in from {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n);
            keep_newlines(&mut out, &chars[i..end]);
            i = end;
        } else if c == '/' && next == Some('*') {
            let (mut depth, mut j) = (0usize, i);
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            keep_newlines(&mut out, &chars[i..j.min(chars.len())]);
            i = j;
        } else if c == '"' {
            // A raw string if `r` and `#`s precede the quote (and the `r`
            // starts a token, perhaps after `b`).
            let hashes = out.chars().rev().take_while(|&c| c == '#').count();
            let before: Vec<char> = out.chars().rev().skip(hashes).take(3).collect();
            let raw = before.first() == Some(&'r')
                && match before.get(1) {
                    Some(&'b') => !before.get(2).is_some_and(|&c| ident(c)),
                    Some(&c) => !ident(c),
                    None => true,
                };
            let mut j = i + 1;
            if raw {
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                while j < chars.len() && !chars[j..].starts_with(&close) {
                    j += 1;
                }
                j = (j + close.len()).min(chars.len());
            } else {
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                j = (j + 1).min(chars.len());
            }
            keep_newlines(&mut out, &chars[i..j]);
            i = j;
        } else if c == '\'' {
            // A character literal (`'x'`, `'\n'`, `'\''`), or a lifetime.
            let end = if next == Some('\\') {
                let mut j = i + 3;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                Some(j + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            if let Some(end) = end {
                let end = end.min(chars.len());
                keep_newlines(&mut out, &chars[i..end]);
                i = end;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The tokens of blanked source, each with its line (from 1).
fn tokens(blanked: &str) -> Vec<(Tok, usize)> {
    let mut out = Vec::new();
    for (n, line) in blanked.lines().enumerate() {
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() || c == '_' {
                let mut word = String::from(c);
                while let Some(&c) = chars.peek() {
                    if !(c.is_alphanumeric() || c == '_') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push((Tok::Ident(word), n + 1));
            } else if !c.is_whitespace() {
                out.push((Tok::Punct(c), n + 1));
            }
        }
    }
    out
}

fn is_ident(toks: &[(Tok, usize)], i: usize, word: &str) -> bool {
    matches!(toks.get(i), Some((Tok::Ident(w), _)) if w == word)
}

fn is_punct(toks: &[(Tok, usize)], i: usize, c: char) -> bool {
    matches!(toks.get(i), Some((Tok::Punct(p), _)) if *p == c)
}

fn is_path_sep(toks: &[(Tok, usize)], i: usize) -> bool {
    is_punct(toks, i, ':') && is_punct(toks, i + 1, ':')
}

/// The first segments of the paths that start at token `i` (after `crate::`
/// or an escaping `super::`): one identifier, or each item of a `{…}` group.
fn first_segments(toks: &[(Tok, usize)], i: usize) -> Vec<(String, usize)> {
    match toks.get(i) {
        Some((Tok::Ident(w), line)) => vec![(w.clone(), *line)],
        Some((Tok::Punct('{'), _)) => {
            let mut out = Vec::new();
            let (mut depth, mut at_start) = (0usize, true);
            for (tok, line) in &toks[i..] {
                match tok {
                    Tok::Punct('{') => {
                        depth += 1;
                        at_start = depth == 1;
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => at_start = true,
                    Tok::Ident(w) if at_start => {
                        out.push((w.clone(), *line));
                        at_start = false;
                    }
                    _ => at_start = false,
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The names `lib.rs` declares as modules.
fn root_modules(lib: &[(Tok, usize)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for i in 0..lib.len() {
        if is_ident(lib, i, "mod")
            && let Some((Tok::Ident(name), _)) = lib.get(i + 1)
            && is_punct(lib, i + 2, ';')
        {
            out.insert(name.clone());
        }
    }
    out
}

/// What each name re-exported at the crate root (`pub use crate::…`) comes
/// from: the name (or its alias) and its top-level module.
fn root_reexports(lib: &[(Tok, usize)]) -> BTreeMap<String, String> {
    /// Flattens the use tree at `i` under `top` (the path's first segment
    /// once known), adding each leaf's name; returns the index after it.
    fn walk(
        toks: &[(Tok, usize)],
        mut i: usize,
        top: Option<&str>,
        out: &mut BTreeMap<String, String>,
    ) -> usize {
        if is_punct(toks, i, '{') {
            i += 1;
            while !is_punct(toks, i, '}') && i < toks.len() {
                i = walk(toks, i, top, out);
                if is_punct(toks, i, ',') {
                    i += 1;
                }
            }
            return i + 1;
        }
        let Some((Tok::Ident(name), _)) = toks.get(i) else {
            return i + 1;
        };
        let top = top.unwrap_or(name);
        if is_path_sep(toks, i + 1) {
            return walk(toks, i + 3, Some(top), out);
        }
        let mut leaf = name.clone();
        i += 1;
        if is_ident(toks, i, "as")
            && let Some((Tok::Ident(alias), _)) = toks.get(i + 1)
        {
            leaf.clone_from(alias);
            i += 2;
        }
        out.insert(leaf, top.to_owned());
        i
    }
    let mut out = BTreeMap::new();
    for i in 0..lib.len() {
        if is_ident(lib, i, "pub")
            && is_ident(lib, i + 1, "use")
            && is_ident(lib, i + 2, "crate")
            && is_path_sep(lib, i + 3)
        {
            walk(lib, i + 5, None, &mut out);
        }
    }
    out
}

/// One path from a module into another top-level module.
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
    how: String,
}

/// The top-level module of `rel` (a path under `src/`) and how deep the file's
/// module is (`store/mod.rs` 1, `store/gc.rs` 2).
fn module_of(rel: &Path) -> (String, usize) {
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let top = parts[0].trim_end_matches(".rs").to_owned();
    let depth = if parts.last().is_some_and(|p| p == "mod.rs") {
        parts.len() - 1
    } else {
        parts.len()
    };
    (top, depth)
}

/// Every import in the file at `rel` (under `src/`) that leaves its top-level
/// module.
fn imports_of(
    rel: &Path,
    src: &str,
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<String, String>,
    unresolved: &mut Vec<String>,
) -> Vec<Import> {
    let (from, file_depth) = module_of(rel);
    let toks = tokens(&blank(src));
    let mut out = Vec::new();
    let mut resolve = |segments: Vec<(String, usize)>, how: &str, out: &mut Vec<Import>| {
        for (first, line) in segments {
            let to = if modules.contains(&first) {
                first.clone()
            } else if let Some(module) = reexports.get(&first) {
                module.clone()
            } else {
                unresolved.push(format!("src/{}:{line}: {how}{first}", rel.display()));
                continue;
            };
            out.push(Import {
                file: format!("src/{}", rel.display()),
                line,
                from: from.clone(),
                to,
                how: format!("{how}{first}"),
            });
        }
    };
    // Inline modules open at these brace depths.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|&d| d > depth) {
                    inline.pop();
                }
            }
            Tok::Ident(w)
                if w == "mod"
                    && matches!(toks.get(i + 1), Some((Tok::Ident(_), _)))
                    && is_punct(&toks, i + 2, '{') =>
            {
                inline.push(depth + 1);
            }
            Tok::Ident(w) if w == "crate" && is_path_sep(&toks, i + 1) => {
                let after_dollar = i > 0 && is_punct(&toks, i - 1, '$');
                if !after_dollar {
                    resolve(first_segments(&toks, i + 3), "crate::", &mut out);
                }
            }
            Tok::Ident(w)
                if w == "super"
                    && is_path_sep(&toks, i + 1)
                    && !(i >= 2 && is_path_sep(&toks, i - 2)) =>
            {
                // The start of a `super::` chain: count it.
                let mut n = 0;
                while is_ident(&toks, i + 3 * n, "super") && is_path_sep(&toks, i + 3 * n + 1) {
                    n += 1;
                }
                if n >= file_depth + inline.len() {
                    let how = "super::".repeat(n);
                    resolve(first_segments(&toks, i + 3 * n), &how, &mut out);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down_the_strata() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_text = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let lib = tokens(&blank(&lib_text));
    let modules = root_modules(&lib);
    let reexports = root_reexports(&lib);
    let listed: BTreeSet<String> = STRATA
        .iter()
        .flat_map(|(m, _)| m.iter().map(|&m| m.to_owned()))
        .chain([TEST_ONLY.to_owned()])
        .collect();
    assert_eq!(
        modules, listed,
        "lib.rs declares modules the strata above do not list, or the other way round"
    );
    assert!(
        reexports.len() > 20 && reexports.get("Store").is_some_and(|m| m == "store"),
        "the crate root's re-exports were not parsed: {reexports:?}"
    );

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut imports = Vec::new();
    let mut unresolved = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src/");
        if rel == Path::new("lib.rs") || rel.starts_with("bin") {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read a source file");
        imports.extend(imports_of(
            rel,
            &text,
            &modules,
            &reexports,
            &mut unresolved,
        ));
    }
    assert!(
        unresolved.is_empty(),
        "paths into the crate root that name no module and no re-export:\n{}",
        unresolved.join("\n")
    );

    // Not vacuous: every stratum imports from some other module, and the
    // parse found it.
    let mut per_stratum: BTreeMap<String, usize> = BTreeMap::new();
    for import in imports.iter().filter(|i| i.from != i.to) {
        let stratum = rank(&import.from).map_or(TEST_ONLY.to_owned(), |(r, _)| r.to_string());
        *per_stratum.entry(stratum).or_default() += 1;
    }
    eprintln!("imports out of each stratum (by rank): {per_stratum:?}");
    for stratum in (0..STRATA.len())
        .map(|r| r.to_string())
        .chain([TEST_ONLY.to_owned()])
    {
        assert!(
            per_stratum.get(&stratum).copied().unwrap_or(0) > 0,
            "no import out of stratum {stratum} was found: the parse is broken ({per_stratum:?})"
        );
    }

    let mut wrong = String::new();
    for import in &imports {
        if let Some(why) = forbidden(&import.from, &import.to) {
            let _ = writeln!(
                wrong,
                "{}:{}: {} -> {} ({why}): `{}`",
                import.file, import.line, import.from, import.to, import.how
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the strata (see this test's doc comment for the order):\n{wrong}"
    );
}

#[test]
fn the_parser_sees_what_it_must() {
    let src = r##"
        use crate::{id::ChunkId, tree::{Entry, Layer}};
        // use crate::mount::Nothing;
        const S: &str = "crate::oci::not_code";
        const R: &str = r#"crate::build::neither"#;
        fn f<'a>(c: char) -> bool { c == '"' && crate::store::layout::TMP.len() > 0 }
        mod tests {
            use super::*;
            use super::super::super::Store;
        }
        fn g() { let _ = super::super::oci::x(); }
    "##;
    let modules: BTreeSet<String> = ["id", "tree", "store", "oci", "mount", "build"]
        .map(String::from)
        .into();
    let reexports = BTreeMap::from([("Store".to_owned(), "store".to_owned())]);
    let mut unresolved = Vec::new();
    let found = imports_of(
        Path::new("mount/a.rs"),
        src,
        &modules,
        &reexports,
        &mut unresolved,
    );
    let found: Vec<(usize, &str, &str)> = found
        .iter()
        .map(|i| (i.line, i.to.as_str(), i.how.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (2, "id", "crate::id"),
            (2, "tree", "crate::tree"),
            (6, "store", "crate::store"),
            (9, "store", "super::super::super::Store"),
            (11, "oci", "super::super::oci"),
        ]
    );
    assert!(unresolved.is_empty(), "{unresolved:?}");
    assert_eq!(forbidden("mount", "oci"), Some("sideways, to a peer"));
    assert_eq!(forbidden("tree", "build"), Some("upward"));
    assert_eq!(forbidden("error", "id"), None);
    assert_eq!(forbidden("build", "mount"), None);
    assert_eq!(forbidden("fuzzing", "build"), None);
    assert_eq!(
        forbidden("store", "fuzzing"),
        Some("into the test-only entry points")
    );
}
