//! Where and how the uploader connects, with libpq's meanings, so that the URL or the
//! environment that works for `psql` works here:
//!
//! - `DATABASE_URL` (`postgres://user@host:port/db?sslmode=verify-full&sslrootcert=...`)
//!   and/or libpq's environment variables (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`,
//!   `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGAPPNAME`);
//!   the URL wins where both say something;
//! - passwords from `PGPASSFILE` or `~/.pgpass` (mode 0600), so that none has to sit in
//!   `DATABASE_URL`;
//! - TLS (rustls, the stack already in the tree for ImageKit) with every `sslmode`:
//!   `disable`, `allow`, `prefer` (the default), `require`, `verify-ca`, `verify-full`;
//!   `sslrootcert=system` for the public CAs; as libpq does, `require` verifies the server's
//!   certificate when a root certificate is given, and `~/.postgresql/root.crt`,
//!   `postgresql.crt` and `postgresql.key` are used when present and nothing else is set;
//! - nothing that needs a session to itself: no `extra_float_digits` startup parameter
//!   (PgBouncer refuses unknown ones), no named prepared statements (see the module root).

use super::DbError;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The application name the uploader reports when none is configured.
pub const APPLICATION_NAME: &str = "venue-image-uploader";

/// A resolved connection target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The options every connection of the pool uses.
    pub options: PgConnectOptions,
    /// `host:port/database`, for messages (never the password).
    pub describe: String,
}

impl Target {
    /// The `sslmode` in effect.
    pub fn ssl_mode(&self) -> PgSslMode {
        self.options.get_ssl_mode()
    }

    /// Whether the server is this machine (a Unix socket, `localhost` or a loopback
    /// address), where an unencrypted connection exposes nothing.
    pub fn is_local(&self) -> bool {
        if self.options.get_socket().is_some() {
            return true;
        }
        let host = self.options.get_host();
        host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// libpq's files in `~/.postgresql/`.
fn home_file(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql").join(name);
    path.is_file().then_some(path)
}

/// Resolves the target from `url` (when given) and libpq's environment variables.
pub fn target(url: Option<&str>) -> Result<Target, DbError> {
    target_with(url, |k| std::env::var(k).ok(), home_file)
}

fn target_with(
    url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    home: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Target, DbError> {
    let bad = |e: &dyn std::fmt::Display| {
        DbError::Setup(format!(
            "DATABASE_URL is not a valid PostgreSQL connection URL (postgres://user@host:port/database?sslmode=...): {e}"
        ))
    };
    // sslrootcert=system (libpq 16): the public CAs, which is what rustls uses when no
    // root certificate is set; sqlx would take the word for a file name.
    let mut system_roots = env("PGSSLROOTCERT").as_deref() == Some("system");
    let mut root_in_url = false;
    let mut cert_in_url = false;
    let mut key_in_url = false;
    let mut options = match url {
        Some(u) => {
            let mut parsed = url::Url::parse(u).map_err(|e| bad(&e))?;
            if !matches!(parsed.scheme(), "postgres" | "postgresql") {
                return Err(bad(&format!("unknown scheme {:?}", parsed.scheme())));
            }
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut kept = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                match k.as_str() {
                    "sslrootcert" if v == "system" => system_roots = true,
                    "sslrootcert" => {
                        system_roots = false;
                        root_in_url = true;
                        kept.push((k, v));
                    }
                    "sslcert" => {
                        cert_in_url = true;
                        kept.push((k, v));
                    }
                    "sslkey" => {
                        key_in_url = true;
                        kept.push((k, v));
                    }
                    _ => kept.push((k, v)),
                }
            }
            if kept.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(kept);
            }
            PgConnectOptions::from_str(parsed.as_str()).map_err(|e| bad(&e))?
        }
        None => PgConnectOptions::new(),
    };
    let root_set = !system_roots && (root_in_url || env("PGSSLROOTCERT").is_some());
    let mut root_set = root_set;
    if !system_roots && !root_set {
        if let Some(path) = home("root.crt") {
            options = options.ssl_root_cert(path);
            root_set = true;
        }
    }
    if !cert_in_url && env("PGSSLCERT").is_none() {
        if let Some(path) = home("postgresql.crt") {
            options = options.ssl_client_cert(path);
        }
    }
    if !key_in_url && env("PGSSLKEY").is_none() {
        if let Some(path) = home("postgresql.key") {
            options = options.ssl_client_key(path);
        }
    }
    match options.get_ssl_mode() {
        // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
        PgSslMode::Require if root_set => options = options.ssl_mode(PgSslMode::VerifyCa),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull if !root_set && !system_roots => {
            return Err(DbError::Setup(format!(
                "sslmode={} needs the server's root certificate: set sslrootcert=<file> in DATABASE_URL \
                 (or PGSSLROOTCERT, or ~/.postgresql/root.crt), or sslrootcert=system for a public CA",
                ssl_mode_name(options.get_ssl_mode())
            )));
        }
        _ => {}
    }
    if options.get_application_name().is_none() {
        options = options.application_name(APPLICATION_NAME);
    }
    let options = options.extra_float_digits(None::<i8>);
    let describe = format!(
        "{}:{}/{}",
        options
            .get_socket()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| options.get_host().to_string()),
        options.get_port(),
        options.get_database().unwrap_or("(default database)")
    );
    Ok(Target { options, describe })
}

/// libpq's spelling of a mode.
pub fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str, env: &[(&str, &str)], home: &[&str]) -> Result<Target, DbError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let home: Vec<String> = home.iter().map(|s| s.to_string()).collect();
        target_with(
            Some(url),
            |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            |f| {
                home.iter()
                    .any(|h| h == f)
                    .then(|| PathBuf::from(format!("/home/u/.postgresql/{f}")))
            },
        )
    }

    #[test]
    fn sslmodes_keep_libpqs_meanings() {
        let t = resolve("postgres://u@db.example.com/app", &[], &[]).unwrap();
        assert!(!t.is_local());
        // The URL's query, the files in ~/.postgresql, and the mode libpq would use.
        let cases: [(&str, &[&str], &str); 5] = [
            ("", &[], "prefer"),
            ("?sslmode=require", &[], "require"),
            // require with a root certificate verifies it, as libpq does.
            ("?sslmode=require&sslrootcert=/ca.pem", &[], "verify-ca"),
            ("?sslmode=require", &["root.crt"], "verify-ca"),
            (
                "?sslmode=verify-full&sslrootcert=system",
                &[],
                "verify-full",
            ),
        ];
        for (query, home, mode) in cases {
            let t = resolve(
                &format!("postgres://u@db.example.com/app{query}"),
                &[],
                home,
            )
            .unwrap();
            assert_eq!(ssl_mode_name(t.ssl_mode()), mode, "{query} {home:?}");
        }
        // verify-* without any root certificate is refused with the way out.
        let e = resolve(
            "postgres://u@db.example.com/app?sslmode=verify-full",
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslrootcert"), "{e}");
        let t = resolve(
            "postgres://u@db.example.com/app",
            &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", "/ca.pem")],
            &[],
        );
        // PGSSLMODE is read by sqlx itself from the real environment; here only the
        // root certificate's presence is checked for the URL's own mode.
        assert!(t.is_ok());
    }

    #[test]
    fn local_targets_and_names() {
        let t = resolve("postgres://u@127.0.0.1:5433/app", &[], &[]).unwrap();
        assert!(t.is_local());
        assert_eq!(t.describe, "127.0.0.1:5433/app");
        assert_eq!(t.options.get_application_name(), Some(APPLICATION_NAME));
        let t = resolve("postgres://u@[::1]/app?application_name=mine", &[], &[]).unwrap();
        assert!(t.is_local());
        assert_eq!(t.options.get_application_name(), Some("mine"));
        assert!(resolve("postgres://u@localhost/app", &[], &[])
            .unwrap()
            .is_local());
        assert!(resolve("mysql://u@localhost/app", &[], &[]).is_err());
        let e = resolve("postgres://u:secret@host:99999/app", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
