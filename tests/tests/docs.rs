//! The documentation is checked like code, without a database: README.md and docs/*.md.
//!
//! - Every fenced shell block (```sh, ```bash, ```console; a console block's commands are
//!   its `$ ` lines) passes `bash -n`; every `venue-image-uploader ...` it runs parses with
//!   the real clap definition (`venue_image_uploader::cli::Cli`, with every environment
//!   variable ignored, so the test does not depend on the shell it runs in); every
//!   `scripts/...` path it names exists and is executable.
//! - Every ```sql block names only objects of the extension that exist (each
//!   `venue_image...` identifier appears in the extension's sources, the migrations or the
//!   grant list), and every `venue_images.<setting>` the docs name is a registered setting.
//! - docs/sql-api.md names every function of the grant list and every setting;
//!   docs/operations.md names every subcommand of the uploader.
//! - docs/security.md's grant table equals `venue_images_core::roles::GRANTS`. On a
//!   mismatch the test prints the table it expects; `VENUE_IMAGES_BLESS_DOCS=1` writes it.
//! - Relative links point at files that exist, and their `#anchors` at headings.
//! - docs/development.md shows each crate's module graph as its `lib.rs` draws it.
//! - The README stays short and starts with the two commands.

use clap::{CommandFactory, FromArgMatches};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use venue_image_uploader::cli::Cli;
use venue_images_core::roles::{Role, GRANTS};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// A documentation file: its path relative to the root, and its text.
struct Doc {
    path: String,
    text: String,
}

/// README.md and every docs/*.md.
fn docs() -> Vec<Doc> {
    let root = root();
    let mut paths = vec!["README.md".to_string()];
    let mut more: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    more.sort();
    paths.extend(more);
    paths
        .into_iter()
        .map(|p| Doc {
            text: std::fs::read_to_string(root.join(&p)).unwrap_or_else(|e| panic!("{p}: {e}")),
            path: p,
        })
        .collect()
}

fn doc<'a>(all: &'a [Doc], path: &str) -> &'a Doc {
    all.iter()
        .find(|d| d.path == path)
        .unwrap_or_else(|| panic!("{path} is missing"))
}

/// A fenced code block.
struct Block {
    /// `path:line` of its opening fence.
    at: String,
    /// Its info string (`sh`, `sql`, ...).
    lang: String,
    /// Its lines, without the fence's indentation.
    lines: Vec<String>,
}

fn blocks(d: &Doc) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(Block, usize)> = None;
    for (i, line) in d.text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let block = Block {
                        at: format!("{}:{}", d.path, i + 1),
                        lang: info.trim().to_string(),
                        lines: Vec::new(),
                    };
                    open = Some((block, indent));
                }
            }
            Some((mut block, fence_indent)) => {
                if trimmed.starts_with("```") && trimmed.trim_end() == "```" {
                    out.push(block);
                } else {
                    let cut = line.len() - line.trim_start_matches(' ').len();
                    block.lines.push(line[cut.min(fence_indent)..].to_string());
                    open = Some((block, fence_indent));
                }
            }
        }
    }
    assert!(open.is_none(), "{}: a code block is not closed", d.path);
    out
}

fn is_shell(lang: &str) -> bool {
    matches!(lang, "sh" | "bash" | "console" | "shell")
}

/// The commands of a shell block, continuation lines joined; a console block's are its
/// `$ ` lines.
fn commands(b: &Block) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    for line in &b.lines {
        let text = match (&pending, b.lang.as_str()) {
            (Some(_), _) => line.as_str(),
            (None, "console") => match line.strip_prefix("$ ") {
                Some(cmd) => cmd,
                None => continue,
            },
            (None, _) => line.as_str(),
        };
        let mut joined = pending.take().unwrap_or_default();
        match text.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                pending = Some(joined);
            }
            None => {
                joined.push_str(text);
                out.push(joined);
            }
        }
    }
    out.extend(pending);
    out
}

/// A token of a shell command line.
#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    /// `|`, `||`, `&&`, `;`, `&`, `(`, `)`: ends a simple command.
    Sep,
    /// `>`, `>>`, `<`, `2>`, ...: the next word is a file.
    Redirect,
}

/// Splits a command line as the shell would (quotes, escapes, comments, operators), well
/// enough for the commands documentation shows.
fn split(line: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    out.push(Tok::Word(w));
                }
            }
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed ' in {line:?}")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(format!("unclosed \" in {line:?}")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed \" in {line:?}")),
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.get_or_insert_with(String::new).push(c);
                }
            }
            '|' | '&' | ';' | '(' | ')' => {
                if let Some(w) = word.take() {
                    out.push(Tok::Word(w));
                }
                if matches!(c, '|' | '&') && chars.peek() == Some(&c) {
                    chars.next();
                }
                out.push(Tok::Sep);
            }
            '<' | '>' => {
                // `2>` and `&>`: the digit belongs to the redirection.
                if word
                    .as_deref()
                    .is_some_and(|w| w.chars().all(|c| c.is_ascii_digit()))
                {
                    word = None;
                }
                if let Some(w) = word.take() {
                    out.push(Tok::Word(w));
                }
                while matches!(chars.peek(), Some('>' | '&')) {
                    chars.next();
                }
                out.push(Tok::Redirect);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        out.push(Tok::Word(w));
    }
    Ok(out)
}

/// The simple commands of a line, each as its words (redirections left out).
fn simple_commands(line: &str) -> Result<Vec<Vec<String>>, String> {
    let mut out = vec![Vec::new()];
    let mut skip_next = false;
    for t in split(line)? {
        match t {
            Tok::Sep => out.push(Vec::new()),
            Tok::Redirect => skip_next = true,
            Tok::Word(w) => {
                if std::mem::take(&mut skip_next) {
                    continue;
                }
                out.last_mut().expect("one at least").push(w);
            }
        }
    }
    out.retain(|c| !c.is_empty());
    Ok(out)
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// The command a simple command runs, and its arguments: after variable assignments,
/// `sudo` (and its options) and `env`.
fn command_of(words: &[String]) -> Option<(&str, &[String])> {
    let mut i = 0;
    loop {
        while i < words.len() && is_assignment(&words[i]) {
            i += 1;
        }
        match words.get(i).map(String::as_str) {
            Some("sudo") => {
                i += 1;
                while let Some(w) = words.get(i) {
                    if !w.starts_with('-') {
                        break;
                    }
                    i += if matches!(w.as_str(), "-u" | "-g" | "-C") {
                        2
                    } else {
                        1
                    };
                }
            }
            Some("env" | "exec" | "time" | "nohup") => i += 1,
            Some(cmd) => return Some((cmd, &words[i + 1..])),
            None => return None,
        }
    }
}

/// The uploader's clap definition with every `env = "..."` removed: what a command line
/// means on its own.
fn cli_without_env() -> clap::Command {
    fn strip(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.env(None::<&'static str>))
            .mut_subcommands(strip)
    }
    strip(Cli::command())
}

/// Parses `venue-image-uploader ARGS` as the binary would (before reading the environment).
fn parse_uploader(args: &[String]) -> Result<(), String> {
    let argv = std::iter::once("venue-image-uploader".to_string()).chain(args.iter().cloned());
    match cli_without_env().try_get_matches_from(argv) {
        Ok(m) => Cli::from_arg_matches(&m)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn bash_n(script: &str) -> Result<(), String> {
    let mut child = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("bash: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn is_script_path(w: &str) -> bool {
    let w = w.strip_prefix("./").unwrap_or(w);
    w.starts_with("scripts/")
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
}

fn check_script(w: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = root().join(w.strip_prefix("./").unwrap_or(w));
    if w.ends_with('/') {
        return if path.is_dir() {
            Ok(())
        } else {
            Err(format!("{w}: no such directory"))
        };
    }
    let meta = std::fs::metadata(&path).map_err(|e| format!("{w}: {e}"))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{w} is not an executable file"));
    }
    Ok(())
}

#[test]
fn every_shell_block_parses_and_every_command_exists() {
    let mut failures = Vec::new();
    let mut uploader_lines = 0;
    let mut script_words = 0;
    for d in docs() {
        for b in blocks(&d).into_iter().filter(|b| is_shell(&b.lang)) {
            let cmds = commands(&b);
            if let Err(e) = bash_n(&cmds.join("\n")) {
                failures.push(format!("{}: bash -n: {e}", b.at));
            }
            for line in &cmds {
                let simple = match simple_commands(line) {
                    Ok(s) => s,
                    Err(e) => {
                        failures.push(format!("{}: {e}", b.at));
                        continue;
                    }
                };
                for words in &simple {
                    for w in words.iter().filter(|w| is_script_path(w)) {
                        script_words += 1;
                        if let Err(e) = check_script(w) {
                            failures.push(format!("{}: {e}", b.at));
                        }
                    }
                    let Some((cmd, args)) = command_of(words) else {
                        continue;
                    };
                    if cmd == "venue-image-uploader" || cmd.ends_with("/venue-image-uploader") {
                        uploader_lines += 1;
                        if let Err(e) = parse_uploader(args) {
                            failures.push(format!("{}: `{line}`:\n{e}", b.at));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        uploader_lines >= 10 && script_words >= 5,
        "the docs show {uploader_lines} uploader commands and {script_words} script paths: is the block parser broken?"
    );
}

/// Every source file of the extension and the migrations, as one text.
fn extension_sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs" || x == "sql") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                out.push('\n');
            }
        }
    }
    let mut out = String::new();
    walk(&root().join("extension/src"), &mut out);
    walk(&root().join("sql"), &mut out);
    out
}

/// The identifiers of `text` that start with `prefix` (whole words).
fn identifiers<'a>(text: &'a str, prefix: &str) -> BTreeSet<&'a str> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        if text[..i].ends_with(is_ident) {
            continue;
        }
        let end = text[i..]
            .find(|c: char| !is_ident(c))
            .map_or(text.len(), |n| i + n);
        out.insert(&text[i..end]);
    }
    out
}

fn contains_word(text: &str, word: &str) -> bool {
    identifiers(text, word).contains(word)
}

/// The settings the extension registers (`c"venue_images.<name>"` in settings.rs).
fn registered_settings() -> BTreeSet<String> {
    let src = std::fs::read_to_string(root().join("extension/src/settings.rs"))
        .expect("extension/src/settings.rs");
    let out: BTreeSet<String> = src
        .match_indices("c\"venue_images.")
        .filter_map(|(i, m)| {
            let rest = &src[i + m.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect();
    assert!(out.len() >= 15, "settings found: {out:?}");
    out
}

#[test]
fn every_sql_block_names_what_exists() {
    let sources = extension_sources();
    let granted: BTreeSet<&str> = GRANTS
        .iter()
        .map(|(_, _, o)| {
            let name = o.strip_prefix("venue_images.").unwrap_or(o);
            name.split('(').next().unwrap_or(name)
        })
        .collect();
    let settings = registered_settings();
    let mut failures = Vec::new();
    let mut checked = 0;
    for d in docs() {
        for b in blocks(&d).into_iter().filter(|b| b.lang == "sql") {
            let body = b.lines.join("\n");
            let mut names = identifiers(&body, "venue_image");
            names.extend(identifiers(&body, "venues_with_image_failures"));
            for name in names {
                checked += 1;
                if !granted.contains(name) && !contains_word(&sources, name) {
                    failures.push(format!(
                        "{}: {name} is neither in the grant list nor in extension/src or sql/",
                        b.at
                    ));
                }
            }
        }
        // Every `venue_images.<name>` written in code (SQL blocks, `inline spans`) is an
        // object or a registered setting.
        let code: Vec<String> = blocks(&d)
            .into_iter()
            .filter(|b| b.lang == "sql")
            .map(|b| b.lines.join("\n"))
            .chain(d.text.split('`').skip(1).step_by(2).map(str::to_string))
            .collect();
        for text in &code {
            for (i, m) in text.match_indices("venue_images.") {
                if text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || "_/-.".contains(c)) {
                    continue;
                }
                let rest = &text[i + m.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Objects of the schema, and file names (`venue_images.so`, `.control`).
                if name.is_empty()
                    || name.starts_with("venue_image")
                    || name.starts_with("venues_")
                    || ["so", "control", "sql"].contains(&name.as_str())
                {
                    continue;
                }
                if !settings.contains(&name) {
                    failures.push(format!(
                        "{}: venue_images.{name} is not a setting the extension registers",
                        d.path
                    ));
                }
            }
        }
    }
    failures.dedup();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked > 50,
        "only {checked} names checked: is the block parser broken?"
    );
}

#[test]
fn the_reference_docs_are_complete() {
    let all = docs();
    let api = &doc(&all, "docs/sql-api.md").text;
    let mut missing = Vec::new();
    for (_, _, object) in GRANTS {
        let name = object.strip_prefix("venue_images.").unwrap_or(object);
        let name = name.split('(').next().unwrap_or(name);
        if !contains_word(api, name) {
            missing.push(format!("docs/sql-api.md does not name {name}"));
        }
    }
    for s in registered_settings() {
        if !api.contains(&format!("`venue_images.{s}`")) {
            missing.push(format!(
                "docs/sql-api.md does not list the setting venue_images.{s}"
            ));
        }
    }
    let ops = &doc(&all, "docs/operations.md").text;
    for sub in Cli::command().get_subcommands() {
        let name = sub.get_name();
        if name != "help" && !ops.contains(&format!("`{name}")) {
            missing.push(format!(
                "docs/operations.md does not show the command {name}"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

const GRANTS_BEGIN: &str = "<!-- BEGIN GRANTS";
const GRANTS_END: &str = "<!-- END GRANTS -->";

/// The grant table docs/security.md shows: one row per object, in the list's order.
fn grant_table() -> String {
    let roles = [Role::Public, Role::Reader, Role::Uploader, Role::Admin];
    let mut objects: Vec<&str> = Vec::new();
    for (_, _, o) in GRANTS {
        if !objects.contains(o) {
            objects.push(o);
        }
    }
    let mut out = String::from(
        "| object | `PUBLIC` | `venue_image_reader` | `venue_image_uploader` | `venue_image_admin` |\n\
         |---|:-:|:-:|:-:|:-:|\n",
    );
    for o in objects {
        let privilege = GRANTS
            .iter()
            .find(|(_, _, x)| x == &o)
            .map(|(_, p, _)| p.as_str())
            .unwrap_or_default();
        let name = o.strip_prefix("venue_images.").unwrap_or(o);
        out.push_str(&format!("| `{name}` ({privilege}) |"));
        for r in roles {
            let yes = GRANTS.iter().any(|(gr, _, x)| *gr == r && x == &o);
            out.push_str(if yes { " ✓ |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_security_docs_grant_table_is_the_one_list() {
    let path = root().join("docs/security.md");
    let text = std::fs::read_to_string(&path).expect("docs/security.md");
    let begin = text
        .find(GRANTS_BEGIN)
        .expect("docs/security.md has the grants markers");
    let begin = begin + text[begin..].find('\n').expect("a line") + 1;
    let end = text.find(GRANTS_END).expect("the end marker");
    let want = grant_table();
    if text[begin..end] == want {
        return;
    }
    if std::env::var_os("VENUE_IMAGES_BLESS_DOCS").is_some() {
        let fixed = format!("{}{want}{}", &text[..begin], &text[end..]);
        std::fs::write(&path, fixed).expect("write docs/security.md");
        return;
    }
    panic!(
        "docs/security.md's grant table differs from venue_images_core::roles::GRANTS; \
         run with VENUE_IMAGES_BLESS_DOCS=1 to write it, or paste:\n\n{want}"
    );
}

/// GitHub's anchor of a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn relative_links_and_anchors_resolve() {
    let all = docs();
    let mut failures = Vec::new();
    for d in &all {
        let dir = Path::new(&d.path).parent().unwrap_or(Path::new(""));
        for (i, _) in d.text.match_indices("](") {
            let rest = &d.text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                PathBuf::from(&d.path)
            } else {
                dir.join(file)
            };
            let full = root().join(&path);
            if !full.exists() {
                failures.push(format!(
                    "{}: link to {target}: {} does not exist",
                    d.path,
                    path.display()
                ));
                continue;
            }
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    failures.push(format!(
                        "{}: link to {target}: no heading #{anchor}",
                        d.path
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_readme_is_short_and_starts_with_the_two_commands() {
    let all = docs();
    let readme = doc(&all, "README.md");
    let lines = readme.text.lines().count();
    assert!(
        lines <= 180,
        "README.md has {lines} lines: keep it near 150, move the rest to docs/"
    );
    let first = blocks(readme)
        .into_iter()
        .next()
        .expect("README.md has a code block");
    let commands: Vec<String> = commands(&first)
        .iter()
        .filter_map(|c| simple_commands(c).ok())
        .flatten()
        .map(|w| w.join(" "))
        .collect();
    assert_eq!(
        commands,
        ["scripts/demo.sh", "scripts/test.sh"],
        "{}",
        first.at
    );
    for d in [
        "docs/sql-api.md",
        "docs/operations.md",
        "docs/security.md",
        "docs/development.md",
        "CHANGELOG.md",
    ] {
        assert!(
            readme.text.contains(&format!("({d})")),
            "README.md does not link {d}"
        );
    }
}

#[test]
fn the_splitter_reads_commands_as_the_shell_does() {
    let c = simple_commands(
        r#"DATABASE_URL=postgres://u@h/db sudo -u postgres venue-image-uploader rates '*'=10 "a b" 2>/dev/null | tee x # note"#,
    )
    .unwrap();
    assert_eq!(c.len(), 2);
    let (cmd, args) = command_of(&c[0]).unwrap();
    assert_eq!(cmd, "venue-image-uploader");
    assert_eq!(args, ["rates", "*=10", "a b"]);
    assert!(parse_uploader(&["rates".into(), "*=10".into()]).is_ok());
    assert!(parse_uploader(&["rates".into(), "x".into()]).is_err());
    assert!(parse_uploader(&["run".into(), "--imagekit-private-key".into(), "k".into()]).is_err());
    // Without its environment variable, a required flag is required.
    assert!(parse_uploader(&["retry".into()]).is_err());
    assert!(parse_uploader(&["--help".into()]).is_ok());
    assert_eq!(
        slug("The sidecar: `venue-image-uploader`"),
        "the-sidecar-venue-image-uploader"
    );
    assert_eq!(
        slug("Connecting: TLS and poolers"),
        "connecting-tls-and-poolers"
    );
}

/// The ```text drawing in the `//!` docs of a crate root.
fn drawn_graph(lib_rs: &str) -> Vec<String> {
    let src =
        std::fs::read_to_string(root().join(lib_rs)).unwrap_or_else(|e| panic!("{lib_rs}: {e}"));
    let docs: Vec<&str> = src
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect();
    let start = docs
        .iter()
        .position(|l| l.trim() == "```text")
        .unwrap_or_else(|| panic!("{lib_rs} draws no module graph"));
    docs[start + 1..]
        .iter()
        .take_while(|l| l.trim() != "```")
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn the_development_docs_show_the_module_graphs_the_crates_draw() {
    let all = docs();
    let dev = doc(&all, "docs/development.md");
    let drawings: Vec<Vec<String>> = blocks(dev)
        .into_iter()
        .filter(|b| b.lang == "text")
        .map(|b| b.lines)
        .collect();
    for lib_rs in [
        "extension/src/lib.rs",
        "extension/core/src/lib.rs",
        "uploader/src/lib.rs",
    ] {
        let want = drawn_graph(lib_rs);
        assert!(
            drawings.contains(&want),
            "docs/development.md does not show {lib_rs}'s module graph; copy it:\n\n{}",
            want.join("\n")
        );
    }
}
