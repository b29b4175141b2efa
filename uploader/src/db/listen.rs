//! `LISTEN venue_image_jobs`: a wake-up hint (uploaders also sleep until
//! `venue_image_next_due()` and poll). `LISTEN` belongs to a session, so it is only used
//! when the connection is one: a transaction-mode pooler (PgBouncer) hands a server
//! connection to another client after each transaction, which would receive our
//! notifications while we receive none. `auto` listens only when the server reports the
//! port we connected to (or a Unix socket for a socket), that is when no pooler or proxy
//! is in between.

use super::{Db, DbError};
use sqlx::postgres::PgListener;

/// The channel the extension notifies when images become due.
pub const CHANNEL: &str = "venue_image_jobs";

/// When to `LISTEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListenMode {
    /// When nothing is between the uploader and the server (see the module).
    Auto,
    /// Always (a direct connection, or a pooler in session mode).
    On,
    /// Never: poll only (a pooler in transaction mode).
    Off,
}

impl Db {
    /// Whether the uploader talks to the server itself: the server's port is the one in
    /// the connection settings (TCP), or the server sees a Unix socket (socket).
    pub async fn is_direct(&self) -> Result<bool, DbError> {
        let port = self.server_port().await?;
        Ok(match self.target.options.get_socket() {
            Some(_) => port.is_none(),
            None => port == Some(i32::from(self.target.options.get_port())),
        })
    }

    /// A listener on [`CHANNEL`], or `None` when `mode` says not to listen here.
    pub async fn listener(&self, mode: ListenMode) -> Result<Option<PgListener>, DbError> {
        let listen = match mode {
            ListenMode::Off => false,
            ListenMode::On => true,
            ListenMode::Auto => self.is_direct().await?,
        };
        if !listen {
            return Ok(None);
        }
        let mut l = PgListener::connect_with(&self.pool).await?;
        l.listen(CHANNEL).await?;
        Ok(Some(l))
    }
}
