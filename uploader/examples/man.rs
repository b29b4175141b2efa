//! Prints the `venue-image-uploader(1)` man page on stdout, generated from the clap
//! definition ([`venue_image_uploader::cli::Cli`]) with `clap_mangen`, so that it never
//! drifts from `--help`:
//!
//! ```sh
//! cargo run -p venue-image-uploader --example man -- 2026-12-01 > venue-image-uploader.1
//! man -l venue-image-uploader.1
//! ```
//!
//! The optional argument is the page's date (`YYYY-MM-DD`). `scripts/package.sh` ships the
//! page in the uploader's Debian package. One page holds every command (`COMMANDS`), with
//! its options and their environment variables.

use clap::CommandFactory;
use clap_mangen::Man;
use std::io::{self, Write};
use venue_image_uploader::exit::Exit;

const NAME: &str = "venue-image-uploader";

fn main() -> io::Result<()> {
    let date = std::env::args().nth(1).unwrap_or_default();
    let cli = venue_image_uploader::cli::Cli::command();
    let man = Man::new(cli.clone()).date(date).manual("venue_images");

    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    section(&mut page, "GLOBAL OPTIONS", |w| {
        man.render_options_section(w)
    })?;

    writeln!(page, ".SH COMMANDS")?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let title = format!("{NAME} {}", sub.get_name());
        // Its synopsis as `--help` writes it (`[OPTIONS]`, then the arguments).
        let mut sub = sub.clone().bin_name(&title).disable_help_flag(true);
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage:").trim().to_owned();
        let sub = Man::new(sub.override_usage(usage));
        writeln!(page, ".SS \"{title}\"")?;
        body(&mut page, |w| sub.render_synopsis_section(w))?;
        writeln!(page, ".PP")?;
        body(&mut page, |w| sub.render_description_section(w))?;
        body(&mut page, |w| sub.render_options_section(w))?;
    }

    writeln!(page, ".SH \"EXIT STATUS\"")?;
    for exit in [Exit::Ok, Exit::Failure, Exit::Usage, Exit::ImageKitRefused] {
        writeln!(page, ".TP\n.B {}\n{}", exit.code(), exit_meaning(exit))?;
    }
    page.extend_from_slice(ENVIRONMENT_AND_FILES.as_bytes());
    // `--help`'s examples (after_long_help), as written: no filling.
    writeln!(page, ".SH EXAMPLES\n.nf")?;
    let mut examples = Vec::new();
    man.render_extra_section(&mut examples)?;
    for line in String::from_utf8_lossy(&examples).lines() {
        if !line.starts_with(".SH ") && line.trim() != "Examples:" {
            writeln!(page, "{line}")?;
        }
    }
    writeln!(page, ".fi")?;
    page.extend_from_slice(SEE_ALSO.as_bytes());
    io::stdout().write_all(&page)
}

/// Appends a section rendered by clap_mangen under `heading` instead of its own.
fn section(
    page: &mut Vec<u8>,
    heading: &str,
    render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    writeln!(page, ".SH \"{heading}\"")?;
    body(page, render)
}

/// Appends what `render` writes, without its `.SH` headings (a command's synopsis,
/// description and options become the body of its `.SS`).
fn body(page: &mut Vec<u8>, render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
    let mut out = Vec::new();
    render(&mut out)?;
    for line in String::from_utf8_lossy(&out).lines() {
        if !line.starts_with(".SH ") {
            writeln!(page, "{line}")?;
        }
    }
    Ok(())
}

/// What each exit status means (a new variant fails to compile here until it is described).
fn exit_meaning(exit: Exit) -> &'static str {
    match exit {
        Exit::Ok => "Done.",
        Exit::Failure => "A configuration or database error, or a failed \\fBcheck\\fR.",
        Exit::Usage => "A usage error.",
        Exit::ImageKitRefused => {
            "ImageKit refused the credentials or the account: nothing can be uploaded until an \
             operator acts; no image was charged an attempt. The systemd unit does not restart \
             on it."
        }
    }
}

const ENVIRONMENT_AND_FILES: &str = r#".SH ENVIRONMENT
Every option can also be set through the environment variable named under it;
\fBDATABASE_URL\fR and \fBIMAGEKIT_PRIVATE_KEY\fR are the two every sidecar needs.
.TP
.B IMAGEKIT_PRIVATE_KEY
The ImageKit private API key, for \fBrun\fR, \fBonce\fR, \fBretry\fR and \fBcheck\fR.
There is no option for the key itself (\fBps\fR shows command lines to every user of the
host): set this variable, or name a file holding the key with
\fB\-\-imagekit\-private\-key\-file\fR (\fBIMAGEKIT_PRIVATE_KEY_FILE\fR), not both.
.PP
Secrets (the private key, passwords in URLs, \fBkey=\fR values and signatures of provider
URLs, tokens) are never logged.
.SH FILES
.TP
.I /etc/venue-image-uploader/env
Environment of the \fBvenue-image-uploader.service\fR systemd unit (mode 0600, read by
systemd as root before the service starts as the \fBvenue-image-uploader\fR system user).
.TP
.I /lib/systemd/system/venue-image-uploader.service
Runs \fBvenue-image-uploader run\fR as a sidecar, restarted on failure, in a read-only,
unprivileged sandbox. Enable it with
\fBsystemctl enable \-\-now venue-image-uploader\fR once the environment file is filled in.
"#;

const SEE_ALSO: &str = r#".SH "SEE ALSO"
.BR psql (1),
.BR systemd.exec (5),
.BR systemctl (1)
.PP
The SQL API, roles and operations are described in docs/sql-api.md, docs/security.md and docs/operations.md of venue_images.
"#;
